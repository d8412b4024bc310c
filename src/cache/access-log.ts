import type { GcRepo } from '../db/gc-repo.js';

/** How often recorded accesses are written to the database. */
const ACCESS_FLUSH_MS = 5_000;
/** Accesses held in memory before a write is due whatever the time (bounds memory). */
const MAX_PENDING = 50_000;

/**
 * Access times for GC's retention and quota. A narinfo or NAR read is the hottest request there
 * is, so it only adds its name to a set in memory (no write per read); the sets are written in
 * one transaction every ACCESS_FLUSH_MS (or once MAX_PENDING names wait), and always before GC
 * plans. A read recorded here is at most that late in the database.
 */
export function createAccessLog(deps: { gc: GcRepo; now?: () => number }) {
  const { gc } = deps;
  const now = deps.now ?? Date.now;
  let paths = new Map<number, Set<string>>();
  let nars = new Map<number, Set<string>>();
  let pending = 0;
  let timer: NodeJS.Timeout | undefined;

  function flush(): void {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (pending === 0) return;
    const [p, n] = [paths, nars];
    paths = new Map();
    nars = new Map();
    pending = 0;
    const at = now();
    for (const [cacheId, set] of p) gc.touchPaths(cacheId, set, at);
    for (const [cacheId, set] of n) gc.touchNars(cacheId, set, at);
  }

  function add(map: Map<number, Set<string>>, cacheId: number, name: string): void {
    let set = map.get(cacheId);
    if (set === undefined) map.set(cacheId, (set = new Set()));
    if (set.has(name)) return;
    set.add(name);
    if (++pending >= MAX_PENDING) setImmediate(flushQuietly);
    else if (timer === undefined) {
      timer = setTimeout(flushQuietly, ACCESS_FLUSH_MS);
      timer.unref();
    }
  }

  function flushQuietly(): void {
    try {
      flush();
    } catch {
      // The database is closing or busy: these accesses are lost, which only makes GC see the
      // paths as a few seconds older.
    }
  }

  return {
    /** A narinfo read (GET or HEAD) or a re-upload of the path. */
    path(cacheId: number, hashPart: string): void {
      add(paths, cacheId, hashPart);
    },
    /** A NAR file read: every path pointing at it. */
    nar(cacheId: number, fileName: string): void {
      add(nars, cacheId, fileName);
    },
    /** Writes what is pending now (before GC plans, and at shutdown). */
    flush,
  };
}

export type AccessLog = ReturnType<typeof createAccessLog>;
