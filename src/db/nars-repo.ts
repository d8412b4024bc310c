import type { Database } from 'better-sqlite3';

export type NarState = 'pending' | 'valid';

export interface NarRow {
  id: number;
  cacheId: number;
  fileName: string;
  storageKey: string;
  compression: string;
  fileHash: string;
  fileSize: number;
  narHash: string;
  narSize: number;
  listingKey: string | null;
  state: NarState;
  createdAt: number;
  /** When background recompression moved every path to another file (still valid and served). */
  supersededAt: number | null;
}

interface RawNar {
  id: number;
  cache_id: number;
  file_name: string;
  storage_key: string;
  compression: string;
  file_hash: string;
  file_size: number;
  nar_hash: string;
  nar_size: number;
  listing_key: string | null;
  state: NarState;
  created_at: number;
  superseded_at?: number | null;
}

const toNar = (r: RawNar): NarRow => ({
  id: r.id,
  cacheId: r.cache_id,
  fileName: r.file_name,
  storageKey: r.storage_key,
  compression: r.compression,
  fileHash: r.file_hash,
  fileSize: r.file_size,
  narHash: r.nar_hash,
  narSize: r.nar_size,
  listingKey: r.listing_key,
  state: r.state,
  createdAt: r.created_at,
  supersededAt: r.superseded_at ?? null,
});

export type NewNar = Omit<NarRow, 'id' | 'state' | 'createdAt' | 'supersededAt'>;

/** NAR files: uploaded as pending, made valid when a narinfo claims them. */
export function createNarsRepo(db: Database) {
  const byName = db.prepare<[number, string], RawNar>('SELECT * FROM nars WHERE cache_id = ? AND file_name = ?');
  const byId = db.prepare<[number], RawNar>('SELECT * FROM nars WHERE id = ?');
  // A re-upload of a pending file replaces its record; a valid one is immutable (the bytes are
  // addressed by their hash, so a valid record already describes them).
  const upsertPending = db.prepare(`
    INSERT INTO nars (cache_id, file_name, storage_key, compression, file_hash, file_size, nar_hash, nar_size,
      listing_key, state, created_at)
    VALUES (@cacheId, @fileName, @storageKey, @compression, @fileHash, @fileSize, @narHash, @narSize,
      @listingKey, 'pending', @createdAt)
    ON CONFLICT (cache_id, file_name) DO UPDATE SET
      storage_key = excluded.storage_key, compression = excluded.compression, file_hash = excluded.file_hash,
      file_size = excluded.file_size, nar_hash = excluded.nar_hash, nar_size = excluded.nar_size,
      listing_key = excluded.listing_key, created_at = excluded.created_at
    WHERE nars.state = 'pending'`);
  const markValid = db.prepare("UPDATE nars SET state = 'valid' WHERE id = ?");
  const stalePending = db.prepare<[number], RawNar>("SELECT * FROM nars WHERE state = 'pending' AND created_at < ?");
  const remove = db.prepare("DELETE FROM nars WHERE id = ? AND state = 'pending' AND created_at = ?");
  // A file written and verified by narhub itself (recompression): valid at once. An existing
  // pending record of the same name is taken over; a valid one is kept as it is.
  const upsertValid = db.prepare(`
    INSERT INTO nars (cache_id, file_name, storage_key, compression, file_hash, file_size, nar_hash, nar_size,
      listing_key, state, created_at)
    VALUES (@cacheId, @fileName, @storageKey, @compression, @fileHash, @fileSize, @narHash, @narSize,
      @listingKey, 'valid', @createdAt)
    ON CONFLICT (cache_id, file_name) DO UPDATE SET
      storage_key = excluded.storage_key, compression = excluded.compression, file_hash = excluded.file_hash,
      file_size = excluded.file_size, nar_hash = excluded.nar_hash, nar_size = excluded.nar_size,
      listing_key = excluded.listing_key, created_at = excluded.created_at, state = 'valid'
    WHERE nars.state = 'pending'`);
  // Each time the last path moves off a file: its grace period counts from the latest move.
  const markSuperseded = db.prepare('UPDATE nars SET superseded_at = ? WHERE id = ?');
  const staleSuperseded = db.prepare<[number], RawNar>(`
    SELECT * FROM nars WHERE superseded_at IS NOT NULL AND superseded_at < ?
      AND NOT EXISTS (SELECT 1 FROM store_paths WHERE store_paths.nar_id = nars.id)`);
  const removeSuperseded = db.prepare(`
    DELETE FROM nars WHERE id = ? AND superseded_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM store_paths WHERE store_paths.nar_id = nars.id)`);
  const recompressible = db.prepare<[], RawNar>(`
    SELECT nars.* FROM nars JOIN caches ON caches.id = nars.cache_id
    WHERE caches.recompress_to_zstd = 1 AND nars.state = 'valid' AND nars.compression IN ('xz', 'bzip2')
      AND EXISTS (SELECT 1 FROM store_paths WHERE store_paths.nar_id = nars.id)
    ORDER BY nars.id`);

  return {
    get(cacheId: number, fileName: string): NarRow | undefined {
      const r = byName.get(cacheId, fileName);
      return r && toNar(r);
    },
    getById(id: number): NarRow | undefined {
      const r = byId.get(id);
      return r && toNar(r);
    },
    /** Records a verified upload as pending; returns false if a valid record already exists. */
    putPending(nar: NewNar): boolean {
      return upsertPending.run({ ...nar, createdAt: Date.now() }).changes > 0;
    },
    markValid(id: number): void {
      markValid.run(id);
    },
    stalePending(olderThan: number): NarRow[] {
      return stalePending.all(olderThan).map(toNar);
    },
    /** Deletes a pending record only if nobody re-uploaded or claimed it meanwhile. */
    removePending(row: NarRow): boolean {
      return remove.run(row.id, row.createdAt).changes > 0;
    },
    /** Records a file narhub wrote and verified itself as valid; returns the record now in place. */
    putValid(nar: NewNar): NarRow {
      upsertValid.run({ ...nar, createdAt: Date.now() });
      return toNar(byName.get(nar.cacheId, nar.fileName)!);
    },
    markSuperseded(id: number, at = Date.now()): void {
      markSuperseded.run(at, id);
    },
    /** Superseded files past their grace period that no path points at any more. */
    staleSuperseded(olderThan: number): NarRow[] {
      return staleSuperseded.all(olderThan).map(toNar);
    },
    /** Deletes a superseded record unless a path has come to point at it meanwhile. */
    removeSuperseded(row: NarRow): boolean {
      return removeSuperseded.run(row.id).changes > 0;
    },
    /** Valid xz/bzip2 files that paths of caches with recompressToZstd still point at. */
    recompressible(): NarRow[] {
      return recompressible.all().map(toNar);
    },
  };
}

export type NarsRepo = ReturnType<typeof createNarsRepo>;
