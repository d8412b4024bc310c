import type { Database } from 'better-sqlite3';

export interface PathRow {
  id: number;
  cacheId: number;
  hashPart: string;
  name: string;
  narId: number;
  deriver: string | null;
  ca: string | null;
  narinfo: string;
}

interface RawPath {
  id: number;
  cache_id: number;
  hash_part: string;
  name: string;
  nar_id: number;
  deriver: string | null;
  ca: string | null;
  narinfo: string;
}

const toPath = (r: RawPath): PathRow => ({
  id: r.id,
  cacheId: r.cache_id,
  hashPart: r.hash_part,
  name: r.name,
  narId: r.nar_id,
  deriver: r.deriver,
  ca: r.ca,
  narinfo: r.narinfo,
});

export interface NewPath {
  cacheId: number;
  hashPart: string;
  name: string;
  narId: number;
  deriver: string | null;
  ca: string | null;
  system: string | null;
  narinfo: string;
  references: string[];
  sigs: string[];
}

/** Committed store paths, their references and signatures. */
export function createPathsRepo(db: Database) {
  const byHash = db.prepare<[number, string], RawPath>(
    'SELECT id, cache_id, hash_part, name, nar_id, deriver, ca, narinfo FROM store_paths ' +
      'WHERE cache_id = ? AND hash_part = ?',
  );
  const narinfoByHash = db.prepare<[number, string], { narinfo: string }>(
    'SELECT narinfo FROM store_paths WHERE cache_id = ? AND hash_part = ?',
  );
  const insert = db.prepare(`
    INSERT INTO store_paths (cache_id, hash_part, name, nar_id, deriver, ca, system, narinfo, created_at, updated_at,
      accessed_at)
    VALUES (@cacheId, @hashPart, @name, @narId, @deriver, @ca, @system, @narinfo, @now, @now, @now)`);
  const insertRef = db.prepare('INSERT OR IGNORE INTO path_references (path_id, reference) VALUES (?, ?)');
  const insertSig = db.prepare('INSERT OR IGNORE INTO signatures (path_id, sig) VALUES (?, ?)');
  const refsOf = db.prepare<[number], { reference: string }>(
    'SELECT reference FROM path_references WHERE path_id = ? ORDER BY reference',
  );
  const sigsOf = db.prepare<[number], { sig: string }>('SELECT sig FROM signatures WHERE path_id = ? ORDER BY sig');
  const clearSigs = db.prepare('DELETE FROM signatures WHERE path_id = ?');
  const batchAfter = db.prepare<[number, number, number, number], { id: number; hash_part: string }>(
    'SELECT id, hash_part FROM store_paths WHERE cache_id = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?',
  );
  const setNarinfo = db.prepare('UPDATE store_paths SET narinfo = ?, updated_at = ? WHERE id = ?');
  const countIn = db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM store_paths WHERE cache_id = ?');
  // One statement whatever the number of hashes: the list travels as one JSON array and each
  // element is looked up through the (cache_id, hash_part) unique index.
  const presentAmong = db.prepare<[number, string], { hash_part: string; name: string }>(`
    SELECT hash_part, name FROM store_paths
    WHERE cache_id = ? AND hash_part IN (SELECT value FROM json_each(?))`);
  const byNar = db.prepare<[number], RawPath>(
    'SELECT id, cache_id, hash_part, name, nar_id, deriver, ca, narinfo FROM store_paths WHERE nar_id = ?',
  );
  const switchNar = db.prepare('UPDATE store_paths SET nar_id = ?, narinfo = ?, updated_at = ? WHERE id = ?');

  return {
    get(cacheId: number, hashPart: string): PathRow | undefined {
      const r = byHash.get(cacheId, hashPart);
      return r && toPath(r);
    },
    /** The hot read path: one indexed lookup returning the stored, signed narinfo. */
    narinfo(cacheId: number, hashPart: string): string | undefined {
      return narinfoByHash.get(cacheId, hashPart)?.narinfo;
    },
    insert(path: NewPath): number {
      const id = Number(insert.run({ ...path, now: Date.now() }).lastInsertRowid);
      for (const ref of path.references) insertRef.run(id, ref);
      for (const sig of path.sigs) insertSig.run(id, sig);
      return id;
    },
    references(pathId: number): string[] {
      return refsOf.all(pathId).map((r) => r.reference);
    },
    signatures(pathId: number): string[] {
      return sigsOf.all(pathId).map((r) => r.sig);
    },
    /** Adds signatures and replaces the served narinfo text accordingly. */
    addSignatures(pathId: number, sigs: string[], narinfo: string): void {
      for (const sig of sigs) insertSig.run(pathId, sig);
      setNarinfo.run(narinfo, Date.now(), pathId);
    },
    /** Replaces the path's signatures and served narinfo text (key rotation, retirement). */
    setSignatures(pathId: number, sigs: string[], narinfo: string): void {
      db.transaction(() => {
        clearSigs.run(pathId);
        for (const sig of sigs) insertSig.run(pathId, sig);
        setNarinfo.run(narinfo, Date.now(), pathId);
      })();
    },
    /** Up to `limit` paths of the cache with `after < id <= upTo`, by id. */
    idsBetween(cacheId: number, after: number, upTo: number, limit: number): { id: number; hashPart: string }[] {
      return batchAfter.all(cacheId, after, upTo, limit).map((r) => ({ id: r.id, hashPart: r.hash_part }));
    },
    count(cacheId: number): number {
      return countIn.get(cacheId)?.n ?? 0;
    },
    /** Of the given hash parts, those committed in the cache, with the name each was committed under. */
    presentAmong(cacheId: number, hashParts: string[]): Map<string, string> {
      const found = new Map<string, string>();
      if (hashParts.length === 0) return found;
      for (const r of presentAmong.all(cacheId, JSON.stringify(hashParts))) found.set(r.hash_part, r.name);
      return found;
    },
    /** Every path (of any cache) whose narinfo points at the NAR file `narId`. */
    byNar(narId: number): PathRow[] {
      return byNar.all(narId).map(toPath);
    },
    /** Points a path at another NAR file with the matching narinfo text. */
    switchNar(pathId: number, narId: number, narinfo: string): void {
      switchNar.run(narId, narinfo, Date.now(), pathId);
    },
  };
}

export type PathsRepo = ReturnType<typeof createPathsRepo>;
