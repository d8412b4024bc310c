import type { Database } from 'better-sqlite3';

export interface CacheSummary {
  paths: number;
  /** Bytes stored (compressed NAR files of committed paths). */
  storedBytes: number;
  narBytes: number;
}

export interface BrowsedPath {
  storePath: string;
  narSize: number;
  fileSize: number;
  createdAt: number;
}

export interface PathDetails extends BrowsedPath {
  narinfo: string;
  references: string[];
  referrers: string[];
  signatures: string[];
}

const STORE = '/nix/store/';

/** Read-only views of a cache for people: size, recent uploads, search, a path's neighbours. */
export function createCacheBrowser(db: Database) {
  const summary = db.prepare<[number], { paths: number; stored: number | null; nar: number | null }>(
    `SELECT count(*) AS paths, sum(n.file_size) AS stored, sum(n.nar_size) AS nar
     FROM store_paths p JOIN nars n ON n.id = p.nar_id WHERE p.cache_id = ?`,
  );
  const recent = db.prepare<
    [number, number],
    { hash_part: string; name: string; nar_size: number; file_size: number; created_at: number }
  >(
    `SELECT p.hash_part, p.name, n.nar_size, n.file_size, p.created_at FROM store_paths p JOIN nars n ON n.id = p.nar_id
     WHERE p.cache_id = ? ORDER BY p.created_at DESC, p.id DESC LIMIT ?`,
  );
  const search = db.prepare<
    [number, string, string, number],
    { hash_part: string; name: string; nar_size: number; file_size: number; created_at: number }
  >(
    `SELECT p.hash_part, p.name, n.nar_size, n.file_size, p.created_at FROM store_paths p JOIN nars n ON n.id = p.nar_id
     WHERE p.cache_id = ? AND (p.hash_part LIKE ? ESCAPE '\\' OR p.name LIKE ? ESCAPE '\\') ORDER BY p.name LIMIT ?`,
  );
  const one = db.prepare<
    [number, string],
    {
      id: number;
      hash_part: string;
      name: string;
      nar_size: number;
      file_size: number;
      created_at: number;
      narinfo: string;
    }
  >(
    `SELECT p.id, p.hash_part, p.name, n.nar_size, n.file_size, p.created_at, p.narinfo FROM store_paths p
     JOIN nars n ON n.id = p.nar_id WHERE p.cache_id = ? AND p.hash_part = ?`,
  );
  const refs = db.prepare<[number], { reference: string }>(
    'SELECT reference FROM path_references WHERE path_id = ? ORDER BY reference',
  );
  const referrers = db.prepare<[number, string, number], { hash_part: string; name: string }>(
    `SELECT p.hash_part, p.name FROM path_references r JOIN store_paths p ON p.id = r.path_id
     WHERE p.cache_id = ? AND r.reference = ? AND p.id != ? ORDER BY p.name LIMIT 200`,
  );
  const sigs = db.prepare<[number], { sig: string }>('SELECT sig FROM signatures WHERE path_id = ? ORDER BY sig');
  const row = (r: {
    hash_part: string;
    name: string;
    nar_size: number;
    file_size: number;
    created_at: number;
  }): BrowsedPath => ({
    storePath: `${STORE}${r.hash_part}-${r.name}`,
    narSize: r.nar_size,
    fileSize: r.file_size,
    createdAt: r.created_at,
  });
  const like = (s: string) => `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

  return {
    summary(cacheId: number): CacheSummary {
      const s = summary.get(cacheId)!;
      return { paths: s.paths, storedBytes: s.stored ?? 0, narBytes: s.nar ?? 0 };
    },
    recent(cacheId: number, limit = 20): BrowsedPath[] {
      return recent.all(cacheId, limit).map(row);
    },
    /** Paths whose hash or name contains `q`. */
    search(cacheId: number, q: string, limit = 50): BrowsedPath[] {
      const term = q.replace(/^\/nix\/store\//, '').trim();
      if (term === '') return [];
      return search.all(cacheId, like(term), like(term), limit).map(row);
    },
    path(cacheId: number, hashPart: string): PathDetails | undefined {
      const r = one.get(cacheId, hashPart);
      if (!r) return undefined;
      return {
        ...row(r),
        narinfo: r.narinfo,
        references: refs.all(r.id).map((x) => STORE + x.reference),
        referrers: referrers
          .all(cacheId, `${r.hash_part}-${r.name}`, r.id)
          .map((x) => `${STORE}${x.hash_part}-${x.name}`),
        signatures: sigs.all(r.id).map((x) => x.sig),
      };
    },
  };
}
