import type { Config } from '../../config/schema.js';
import { formatSize } from '../../units.js';
import { withAdminBackend } from '../admin-backend.js';
import { parseCommand } from '../command-spec.js';
import { GC } from '../specs/admin.js';

/** `narhub gc`: removes (or, with --dry-run, lists) what each cache's policy, pins and orphans say. */
export async function gcCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
): Promise<void> {
  const { values } = parseCommand(GC, argv);
  await withAdminBackend(values, loadConfig, async (admin) => {
    const run = await admin.gc({ cache: values.cache, dryRun: values['dry-run'] });
    if (values.json) {
      out.write(`${JSON.stringify(run, null, 2)}\n`);
      return;
    }
    const verb = run.dryRun ? 'would remove' : 'removed';
    for (const c of run.caches) {
      for (const p of c.paths) out.write(`${verb}\t${c.cache}\t${p.storePath}\t${p.bytes}\n`);
      out.write(
        `${c.cache}: ${verb} ${c.pathsRemoved} paths, ${formatSize(c.bytesFreed)} of NARs` +
          ` (${formatSize(c.bytesAfter)} left), ${c.logsRemoved} logs, ${c.orphansRemoved} of ${c.orphansFound} ` +
          `orphaned files\n`,
      );
    }
    if (!run.dryRun && (run.pendingRemoved > 0 || run.supersededRemoved > 0))
      out.write(`removed ${run.pendingRemoved} unclaimed uploads and ${run.supersededRemoved} superseded NAR files\n`);
    if (!run.dryRun && run.staleUploadsAborted > 0)
      out.write(`aborted ${run.staleUploadsAborted} multipart uploads left by puts that did not finish\n`);
  });
}
