import type { CacheInfoView } from '../../cache/caches.js';
import type { Config } from '../../config/schema.js';
import { DURATION_SYNTAX, formatDuration, formatSize, parseDuration, parseSize, SIZE_SYNTAX } from '../../units.js';
import { withAdminBackend } from '../admin-backend.js';
import { parseInteger } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { CACHE_UPDATE } from '../specs/admin.js';
import { CACHE_CREATE, CACHE_INFO, CACHE_LIST, CACHE_STATS } from '../specs/cache.js';
import { UsageError } from '../usage-error.js';

/** `narhub cache …`: manage caches in the data directory, also while the server runs. */
export async function cacheCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create': {
      const { values, positionals } = parseCommand(CACHE_CREATE, rest);
      const priority = values.priority === undefined ? 40 : parseInteger(values.priority, '--priority');
      if (priority < 0) throw new UsageError('--priority must not be negative');
      const policy = policyOf(values);
      await withAdminBackend(values, loadConfig, async (admin) => {
        const info = await admin.cacheCreate(positionals[0]!, {
          private: values.private ?? false,
          priority,
          ...policy,
          ...signaturePolicyOf(values),
        });
        // A new cache has one key, so its newest public key is the one it signs with.
        out.write(`${info.name}\t${info.publicKeys.at(-1)}\n`);
      });
      return;
    }
    case 'list': {
      const { values } = parseCommand(CACHE_LIST, rest);
      await withAdminBackend(values, loadConfig, async (admin) => {
        const caches = await admin.cacheList();
        if (values.json) out.write(`${JSON.stringify(caches, null, 2)}\n`);
        else
          for (const c of caches)
            out.write(
              `${c.name}\t${c.private ? 'private' : 'public'}\tpriority=${c.priority}\t${c.publicKeys.join(' ')}\n`,
            );
      });
      return;
    }
    case 'info': {
      const { values, positionals } = parseCommand(CACHE_INFO, rest);
      await withAdminBackend(values, loadConfig, async (admin) => {
        const info = await admin.cacheInfo(positionals[0]!);
        if (values.json) out.write(`${JSON.stringify(info, null, 2)}\n`);
        else out.write(describe(info));
      });
      return;
    }
    case 'stats': {
      const { values, positionals } = parseCommand(CACHE_STATS, rest);
      await withAdminBackend(values, loadConfig, async (admin) => {
        const stats = await admin.cacheStats(positionals[0]!);
        const count = (n: number | null) => (n === null ? 'unknown (ask a server: --server)' : String(n));
        out.write(
          values.json
            ? `${JSON.stringify(stats, null, 2)}\n`
            : [
                `paths:          ${stats.paths}`,
                `bytes:          ${formatSize(stats.bytes)}`,
                `pending:        ${stats.pendingNars} NARs, ${formatSize(stats.pendingBytes)}`,
                `narinfo hits:   ${count(stats.narinfoHits)}`,
                `narinfo misses: ${count(stats.narinfoMisses)}`,
                '',
              ].join('\n'),
        );
      });
      return;
    }
    case 'update': {
      const { values, positionals } = parseCommand(CACHE_UPDATE, rest);
      if (values.private && values.public) throw new UsageError('--private and --public contradict each other');
      const change = {
        private: values.private ? true : values.public ? false : undefined,
        priority: values.priority === undefined ? undefined : parseInteger(values.priority, '--priority'),
        ...policyOf(values),
        ...signaturePolicyOf(values),
      };
      if (Object.values(change).every((v) => v === undefined))
        throw new UsageError(
          'nothing to change: give --private, --public, --priority, --retention, --quota, --uploader-key, ' +
            '--unknown-signatures or --max-uploader-signatures',
        );
      await withAdminBackend(values, loadConfig, async (admin) => {
        const info = await admin.cacheUpdate(positionals[0]!, change);
        out.write(values.json ? `${JSON.stringify(info, null, 2)}\n` : describe(info));
      });
      return;
    }
    default:
      throw new UsageError(
        sub === undefined ? 'missing cache subcommand' : `unknown cache subcommand ${JSON.stringify(sub)}`,
      );
  }
}

/** `--retention` and `--quota` as given; undefined when absent. */
function policyOf(values: { retention?: string | undefined; quota?: string | undefined }): {
  retention: number | null | undefined;
  quota: number | null | undefined;
} {
  return {
    retention:
      values.retention === undefined
        ? undefined
        : policyValue(values.retention, '--retention', parseDuration, DURATION_SYNTAX),
    quota: values.quota === undefined ? undefined : policyValue(values.quota, '--quota', parseSize, SIZE_SYNTAX),
  };
}

/** `--uploader-key` (repeated; `none` alone clears), `--unknown-signatures`, `--max-uploader-signatures`. */
function signaturePolicyOf(values: {
  'uploader-key'?: string[] | undefined;
  'unknown-signatures'?: string | undefined;
  'max-uploader-signatures'?: string | undefined;
}): { uploaderKeys?: string[]; refuseUnknownSignatures?: boolean; maxUploaderSignatures?: number } {
  const keys = values['uploader-key'];
  const unknown = values['unknown-signatures'];
  if (unknown !== undefined && unknown !== 'keep' && unknown !== 'refuse')
    throw new UsageError(`--unknown-signatures must be keep or refuse, not ${JSON.stringify(unknown)}`);
  const max = values['max-uploader-signatures'];
  return {
    ...(keys === undefined ? {} : { uploaderKeys: keys.length === 1 && keys[0] === 'none' ? [] : keys }),
    ...(unknown === undefined ? {} : { refuseUnknownSignatures: unknown === 'refuse' }),
    ...(max === undefined ? {} : { maxUploaderSignatures: parseInteger(max, '--max-uploader-signatures') }),
  };
}

/** `none` clears a policy; anything else must be a size or duration. */
function policyValue(
  text: string,
  flag: string,
  parse: (t: string) => number | undefined,
  syntax: string,
): number | null {
  if (text === 'none') return null;
  const value = parse(text);
  if (value === undefined) throw new UsageError(`${flag} ${JSON.stringify(text)} is not ${syntax}, or none`);
  return value;
}

function describe(info: CacheInfoView): string {
  const lines = [
    `name:        ${info.name}`,
    `visibility:  ${info.private ? 'private' : 'public'}`,
    `priority:    ${info.priority}`,
    `retention:   ${info.retention === null ? 'none (keep everything)' : formatDuration(info.retention)}`,
    `quota:       ${info.quota === null ? 'none' : formatSize(info.quota)}`,
    `unknown signatures: ${info.refuseUnknownSignatures ? 'refused' : 'kept'}, ` +
      `at most ${info.maxUploaderSignatures} uploader signatures per path`,
  ];
  for (const k of info.uploaderKeys) lines.push(`uploader key: ${k}`);
  for (const k of info.publicKeys) lines.push(`public key:  ${k}`);
  for (const k of info.keys) {
    const r = k.rewrite;
    const progress =
      r === null ? '' : ` (${r.complete ? 'rewrite complete' : 'rewriting'}: ${r.done}/${r.total} paths)`;
    lines.push(`key:         ${k.name} ${k.state}${progress}`);
  }
  return `${lines.join('\n')}\n`;
}
