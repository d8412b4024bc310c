import type { NarInfo } from '../nix/narinfo.js';
import { DEFAULT_STORE_DIR } from '../nix/store-path.js';
import { mapLimit } from '../io/map-limit.js';
import { CacheFetchError, referencePaths, type CacheClient } from './cache-client.js';
import type { ServeConnection } from './serve-connection.js';

/** narinfo requests in flight at once while walking the inputs' closure. */
const NARINFO_CONCURRENCY = 16;

/**
 * Makes `paths` valid in the connection's store: what the store lacks, and what that needs in
 * turn, is fetched from the cache (each narinfo signature-checked) and added dependencies
 * first. Paths already valid are locked against the garbage collector for the build.
 */
export async function importInputs(
  conn: ServeConnection,
  cache: CacheClient,
  paths: readonly string[],
  opts: { signal?: AbortSignal | undefined; onCopy?: (path: string) => void } = {},
): Promise<number> {
  const { signal } = opts;
  if (paths.length === 0) return 0;
  const valid = await conn.queryValidPaths(paths, { lock: true });
  const wanted = new Map<string, NarInfo>();
  let missing = paths.filter((p) => !valid.has(p));
  while (missing.length > 0) {
    const infos = await mapLimit(missing, NARINFO_CONCURRENCY, async (path) => {
      const info = await cache.narinfo(path, signal);
      if (!info) throw new CacheFetchError(`input ${path} is in neither the spoke's store nor the cache`);
      return info;
    });
    for (const info of infos) wanted.set(info.storePath, info);
    const next = [...new Set(infos.flatMap(referencePaths))].filter((r) => !wanted.has(r) && !valid.has(r));
    if (next.length === 0) break;
    const alsoValid = await conn.queryValidPaths(next, { lock: true });
    for (const p of alsoValid) valid.add(p);
    missing = next.filter((p) => !alsoValid.has(p));
  }
  for (const info of dependenciesFirst(wanted)) {
    opts.onCopy?.(info.storePath);
    const nar = await cache.nar(info, signal);
    await conn.addToStoreNar(
      {
        path: info.storePath,
        deriver: info.deriver ? `${DEFAULT_STORE_DIR}/${info.deriver}` : undefined,
        narHash: info.narHash,
        references: referencePaths(info),
        narSize: info.narSize,
        signatures: info.sigs,
        ca: info.ca,
      },
      nar,
    );
  }
  return wanted.size;
}

/** Paths ordered so each comes after those of its references that are in the set. */
function dependenciesFirst(infos: Map<string, NarInfo>): NarInfo[] {
  const order: NarInfo[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (path: string) => {
    if (state.has(path)) return;
    state.set(path, 'visiting');
    const info = infos.get(path)!;
    for (const ref of referencePaths(info))
      if (ref !== path && infos.has(ref) && state.get(ref) !== 'visiting') visit(ref);
    state.set(path, 'done');
    order.push(info);
  };
  for (const path of [...infos.keys()].sort()) visit(path);
  return order;
}
