import { join } from 'node:path';
import { reindex, type ReindexSummary } from '../../cache/reindex.js';
import type { Config } from '../../config/schema.js';
import { parseCommand } from '../command-spec.js';
import { REINDEX } from '../specs/reindex.js';
import { openRuntime } from '../runtime.js';

/**
 * `narhub reindex`: rebuilds the database from the blob store (local or S3), e.g. after losing
 * it. Warnings go to stderr, one summary line per cache to stdout. Safe to run again, and while
 * the server runs. Caches the database does not know come back as declared in the config, else
 * private (or public with --public), since storage does not record visibility.
 */
export async function reindexCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<void> {
  const { values } = parseCommand(REINDEX, argv);
  const config = await loadConfig();
  const declared = new Map(config.caches.map((c) => [c.name, c]));
  const runtime = await openRuntime(config);
  try {
    const summaries = await reindex(
      { db: runtime.db, store: runtime.store, keysDir: join(config.dataDir, 'keys') },
      {
        cache: values.cache,
        settingsFor: (name) => declared.get(name) ?? (values.public ? { private: false } : undefined),
        warn: (message) => err.write(`narhub: warning: ${message}\n`),
      },
    );
    for (const s of summaries) out.write(`${formatSummary(s)}\n`);
    if (summaries.length === 0) err.write(`narhub: warning: no cache found in ${runtime.store.kind} storage\n`);
    if (runtime.service.tokens.list().length === 0) {
      err.write(
        'narhub: note: tokens live only in the database and cannot be restored; ' +
          'create new ones with `narhub token create`\n',
      );
    }
  } finally {
    await runtime.close();
  }
}

function formatSummary(s: ReindexSummary): string {
  const p = s.paths;
  return [
    `${s.cache}:`,
    `${p.added + p.updated + p.unchanged} paths (${p.added} added, ${p.updated} updated, ${p.skipped} skipped),`,
    `${s.logs} logs, ${s.listings} listings, ${s.realisations} realisations, ${s.debuginfo} debuginfo,`,
    `${s.unreferencedNars} unreferenced NARs;`,
    `keys ${s.keys.join(' ')}${s.generatedKey ? ` (${s.generatedKey} new)` : ''};`,
    `${s.private ? 'private' : 'public'}${s.created ? ', recreated' : ''}`,
  ].join(' ');
}
