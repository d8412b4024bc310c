import type { Database } from 'better-sqlite3';

/** One path as GC plans with it. */
export interface GcPathRow {
  id: number;
  hashPart: string;
  name: string;
  accessedAt: number;
  narId: number;
  fileSize: number;
}

/** Why a path planned for removal stayed, found again inside the removing transaction. */
export type KeptBecause = 'gone' | 'accessed' | 'referenced' | 'held' | 'pinned';

/** What removing one path left for the blob store to delete. */
export interface RemovedPath {
  hashPart: string;
  name: string;
  deriver: string | null;
  /** The NAR file, when no other path points at it: its key, listing and size. */
  nar: { fileName: string; storageKey: string; listingKey: string | null; fileSize: number } | null;
  /** A client's own `<hash>.ls`, when it had one. */
  clientListingKey: string | null;
}

export interface GcRunRow {
  cacheId: number;
  startedAt: number;
  finishedAt: number;
  pathsRemoved: number;
  bytesFreed: number;
  filesRemoved: number;
}

/**
 * GC's bookkeeping: access times, holds of uploads in flight, the graph GC plans over, the
 * checked removal of one path, orphan candidates and run records.
 */
export function createGcRepo(db: Database) {
  const touchPath = db.prepare(
    'UPDATE store_paths SET accessed_at = max(accessed_at, ?) WHERE cache_id = ? AND hash_part = ?',
  );
  const touchNar = db.prepare(`UPDATE store_paths SET accessed_at = max(accessed_at, ?)
    WHERE nar_id = (SELECT id FROM nars WHERE cache_id = ? AND file_name = ?)`);
  const insertHold = db.prepare('INSERT INTO gc_holds (holder, cache_id, hash_part, expires_at) VALUES (?, ?, ?, ?)');
  const releaseHold = db.prepare('DELETE FROM gc_holds WHERE holder = ?');
  const expiredHolds = db.prepare('DELETE FROM gc_holds WHERE expires_at <= ?');
  const paths = db.prepare<[number], GcPathRow>(`
    SELECT sp.id AS id, sp.hash_part AS hashPart, sp.name AS name, sp.accessed_at AS accessedAt,
           sp.nar_id AS narId, n.file_size AS fileSize
    FROM store_paths sp JOIN nars n ON n.id = sp.nar_id WHERE sp.cache_id = ?`);
  // References resolved to path ids through the (cache_id, hash_part) index; self-references dropped.
  const edges = db
    .prepare<[number], [number, number]>(`
    SELECT r.path_id, q.id FROM store_paths p
      JOIN path_references r ON r.path_id = p.id
      JOIN store_paths q ON q.cache_id = p.cache_id AND q.hash_part = substr(r.reference, 1, 32)
    WHERE p.cache_id = ? AND q.id != p.id`)
    .raw(true);
  const pinnedPaths = db.prepare<[number, number], { store_path: string }>(
    'SELECT store_path FROM pins WHERE cache_id = ? AND (expires_at IS NULL OR expires_at > ?)',
  );
  const heldPaths = db.prepare<[number, number], { hash_part: string }>(
    'SELECT DISTINCT hash_part FROM gc_holds WHERE cache_id = ? AND expires_at > ?',
  );

  const pathById = db.prepare<
    [number],
    {
      id: number;
      cache_id: number;
      hash_part: string;
      name: string;
      nar_id: number;
      deriver: string | null;
      accessed_at: number;
    }
  >('SELECT id, cache_id, hash_part, name, nar_id, deriver, accessed_at FROM store_paths WHERE id = ?');
  // Through the reverse index on the reference, never a scan of the cache's paths (which the
  // planner picks for a plain join: quadratic over a GC run).
  const hasReferrer = db.prepare<[string, number, number], { one: number }>(`
    SELECT 1 AS one FROM path_references r
    WHERE r.reference = ? AND EXISTS (SELECT 1 FROM store_paths s WHERE s.id = r.path_id AND s.cache_id = ?)
      AND r.path_id != ? LIMIT 1`);
  const isHeld = db.prepare<[number, string, number], { one: number }>(
    'SELECT 1 AS one FROM gc_holds WHERE cache_id = ? AND hash_part = ? AND expires_at > ? LIMIT 1',
  );
  const isPinned = db.prepare<[number, string, number], { one: number }>(
    'SELECT 1 AS one FROM pins ' +
      'WHERE cache_id = ? AND store_path = ? AND (expires_at IS NULL OR expires_at > ?) LIMIT 1',
  );
  const deletePath = db.prepare('DELETE FROM store_paths WHERE id = ?');
  const listingOf = db.prepare<[number, string], { storage_key: string }>(
    'SELECT storage_key FROM listings WHERE cache_id = ? AND hash_part = ?',
  );
  const deleteListing = db.prepare('DELETE FROM listings WHERE cache_id = ? AND hash_part = ?');
  // A NAR no path points at any more goes with its last path, unless recompression superseded
  // it (then its own grace period applies).
  const deleteNar = db.prepare<
    [number, number],
    { file_name: string; storage_key: string; listing_key: string | null; file_size: number }
  >(`DELETE FROM nars WHERE id = ? AND superseded_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM store_paths WHERE nar_id = ?)
     RETURNING file_name, storage_key, listing_key, file_size`);
  const deleteOrphanLog = db.prepare<[number, string, number, string], { storage_key: string }>(`
    DELETE FROM logs WHERE cache_id = ? AND drv = ?
      AND NOT EXISTS (SELECT 1 FROM store_paths WHERE cache_id = ? AND deriver = ?)
    RETURNING storage_key`);

  const narKnown = db.prepare<[number, string], { one: number }>(
    'SELECT 1 AS one FROM nars WHERE cache_id = ? AND file_name = ?',
  );
  const pathKnown = db.prepare<[number, string], { one: number }>(
    'SELECT 1 AS one FROM store_paths WHERE cache_id = ? AND hash_part = ?',
  );
  // By primary key, then the key itself: storage_key alone is not indexed, and a scan of the
  // cache's listings or logs for every stored file made the orphan check quadratic.
  const listingKnown = db.prepare<[number, string, string], { one: number }>(
    'SELECT 1 AS one FROM listings WHERE cache_id = ? AND hash_part = ? AND storage_key = ?',
  );
  const logKnown = db.prepare<[number, string, string], { one: number }>(
    'SELECT 1 AS one FROM logs WHERE cache_id = ? AND drv = ? AND storage_key = ?',
  );
  const noteOrphan = db.prepare(
    'INSERT INTO gc_orphans (storage_key, cache_id, first_seen) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
  );
  const orphanSince = db.prepare<[string], { first_seen: number }>(
    'SELECT first_seen FROM gc_orphans WHERE storage_key = ?',
  );
  const forgetOrphan = db.prepare('DELETE FROM gc_orphans WHERE storage_key = ?');
  const orphansOf = db.prepare<[number], { storage_key: string }>(
    'SELECT storage_key FROM gc_orphans WHERE cache_id = ?',
  );
  const insertRun =
    db.prepare(`INSERT INTO gc_runs (cache_id, started_at, finished_at, paths_removed, bytes_freed, files_removed)
    VALUES (@cacheId, @startedAt, @finishedAt, @pathsRemoved, @bytesFreed, @filesRemoved)`);
  const runTotals = db.prepare<
    [],
    { cache_id: number; runs: number; paths: number; bytes: number; last: number | null }
  >(`SELECT cache_id, count(*) AS runs, sum(paths_removed) AS paths, sum(bytes_freed) AS bytes, max(finished_at) AS last
     FROM gc_runs GROUP BY cache_id`);

  return {
    /** Records accesses (narinfo reads, re-uploads) at `at`, in one transaction. */
    touchPaths(cacheId: number, hashParts: Iterable<string>, at: number): void {
      db.transaction(() => {
        for (const h of hashParts) touchPath.run(at, cacheId, h);
      })();
    },
    /** Records reads of NAR files at `at`: every path pointing at them. */
    touchNars(cacheId: number, fileNames: Iterable<string>, at: number): void {
      db.transaction(() => {
        for (const f of fileNames) touchNar.run(at, cacheId, f);
      })();
    },
    hold(holder: string, cacheId: number, hashParts: string[], expiresAt: number): void {
      db.transaction(() => {
        for (const h of new Set(hashParts)) insertHold.run(holder, cacheId, h, expiresAt);
      })();
    },
    release(holder: string): void {
      releaseHold.run(holder);
    },
    dropExpiredHolds(now: number): void {
      expiredHolds.run(now);
    },
    /** The cache's paths, read one row at a time. */
    paths(cacheId: number): IterableIterator<GcPathRow> {
      return paths.iterate(cacheId);
    },
    /** `[referrer id, reference id]` pairs of the cache, read one row at a time. */
    edges(cacheId: number): IterableIterator<[number, number]> {
      return edges.iterate(cacheId);
    },
    pinnedBasenames(cacheId: number, now: number): string[] {
      return pinnedPaths.all(cacheId, now).map((r) => r.store_path);
    },
    heldHashParts(cacheId: number, now: number): string[] {
      return heldPaths.all(cacheId, now).map((r) => r.hash_part);
    },
    /**
     * Removes one path, inside the caller's transaction, only if it still may go: it exists, was
     * not accessed after `plannedAccess`, no other path refers to it, no upload holds it and no
     * pin names it. Its NAR row goes too when no other path points at it.
     */
    removePath(
      pathId: number,
      plannedAccess: number,
      cacheName: string,
      now: number,
    ): { removed: RemovedPath } | { kept: KeptBecause } {
      const p = pathById.get(pathId);
      if (!p) return { kept: 'gone' };
      if (p.accessed_at > plannedAccess) return { kept: 'accessed' };
      const basename = `${p.hash_part}-${p.name}`;
      if (hasReferrer.get(basename, p.cache_id, p.id)) return { kept: 'referenced' };
      if (isHeld.get(p.cache_id, p.hash_part, now)) return { kept: 'held' };
      if (isPinned.get(p.cache_id, basename, now)) return { kept: 'pinned' };
      const listing = listingOf.get(p.cache_id, p.hash_part);
      deleteListing.run(p.cache_id, p.hash_part);
      deletePath.run(p.id);
      const nar = deleteNar.get(p.nar_id, p.nar_id);
      const clientListing = `${cacheName}/${p.hash_part}.ls`;
      return {
        removed: {
          hashPart: p.hash_part,
          name: p.name,
          deriver: p.deriver,
          nar: nar
            ? {
                fileName: nar.file_name,
                storageKey: nar.storage_key,
                listingKey: nar.listing_key,
                fileSize: nar.file_size,
              }
            : null,
          clientListingKey: listing?.storage_key === clientListing ? clientListing : null,
        },
      };
    },
    /** Removes the log of `drv` unless another path of the cache still has it as deriver; its key, or undefined. */
    removeOrphanLog(cacheId: number, drv: string): string | undefined {
      return deleteOrphanLog.get(cacheId, drv, cacheId, drv)?.storage_key;
    },
    /** Whether a row describes a blob, by the blob's kind (its key relative to the cache). */
    describes(cacheId: number, cacheName: string, key: string): boolean {
      const rel = key.slice(cacheName.length + 1);
      let m: RegExpExecArray | null;
      if ((m = /^nar\/([^/]+)$/.exec(rel))) return narKnown.get(cacheId, m[1]!) !== undefined;
      if ((m = /^listing\/([^/]+)\.ls$/.exec(rel))) return narKnown.get(cacheId, m[1]!) !== undefined;
      if ((m = /^([0-9a-df-np-sv-z]{32})\.narinfo$/.exec(rel))) return pathKnown.get(cacheId, m[1]!) !== undefined;
      if (/^[0-9a-df-np-sv-z]{32}\.ls$/.test(rel))
        return listingKnown.get(cacheId, rel.slice(0, 32), key) !== undefined;
      if (rel.startsWith('log/')) return logKnown.get(cacheId, rel.slice(4), key) !== undefined;
      // nix-cache-info, realisations, build traces, debuginfo: never orphans.
      return true;
    },
    /** When the blob was first seen undescribed; records it now if it was not. */
    orphanSince(key: string, cacheId: number, now: number): number {
      noteOrphan.run(key, cacheId, now);
      return orphanSince.get(key)!.first_seen;
    },
    forgetOrphan(key: string): void {
      forgetOrphan.run(key);
    },
    orphanCandidates(cacheId: number): string[] {
      return orphansOf.all(cacheId).map((r) => r.storage_key);
    },
    recordRun(run: GcRunRow): void {
      insertRun.run(run);
    },
    /** Per cache: completed runs, paths removed, bytes freed, when the last one finished. */
    runTotals(): { cacheId: number; runs: number; paths: number; bytes: number; last: number | null }[] {
      return runTotals
        .all()
        .map((r) => ({ cacheId: r.cache_id, runs: r.runs, paths: r.paths, bytes: r.bytes, last: r.last }));
    },
  };
}

export type GcRepo = ReturnType<typeof createGcRepo>;
