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
}

interface RawNar {
  id: number; cache_id: number; file_name: string; storage_key: string; compression: string; file_hash: string;
  file_size: number; nar_hash: string; nar_size: number; listing_key: string | null; state: NarState; created_at: number;
}

const toNar = (r: RawNar): NarRow => ({
  id: r.id, cacheId: r.cache_id, fileName: r.file_name, storageKey: r.storage_key, compression: r.compression,
  fileHash: r.file_hash, fileSize: r.file_size, narHash: r.nar_hash, narSize: r.nar_size, listingKey: r.listing_key,
  state: r.state, createdAt: r.created_at,
});

export type NewNar = Omit<NarRow, 'id' | 'state' | 'createdAt'>;

/** NAR files: uploaded as pending, made valid when a narinfo claims them. */
export function createNarsRepo(db: Database) {
  const byName = db.prepare<[number, string], RawNar>('SELECT * FROM nars WHERE cache_id = ? AND file_name = ?');
  const byId = db.prepare<[number], RawNar>('SELECT * FROM nars WHERE id = ?');
  // A re-upload of a pending file replaces its record; a valid one is immutable (the bytes are
  // addressed by their hash, so a valid record already describes them).
  const upsertPending = db.prepare(`
    INSERT INTO nars (cache_id, file_name, storage_key, compression, file_hash, file_size, nar_hash, nar_size, listing_key, state, created_at)
    VALUES (@cacheId, @fileName, @storageKey, @compression, @fileHash, @fileSize, @narHash, @narSize, @listingKey, 'pending', @createdAt)
    ON CONFLICT (cache_id, file_name) DO UPDATE SET
      storage_key = excluded.storage_key, compression = excluded.compression, file_hash = excluded.file_hash,
      file_size = excluded.file_size, nar_hash = excluded.nar_hash, nar_size = excluded.nar_size,
      listing_key = excluded.listing_key, created_at = excluded.created_at
    WHERE nars.state = 'pending'`);
  const markValid = db.prepare("UPDATE nars SET state = 'valid' WHERE id = ?");
  const stalePending = db.prepare<[number], RawNar>("SELECT * FROM nars WHERE state = 'pending' AND created_at < ?");
  const remove = db.prepare("DELETE FROM nars WHERE id = ? AND state = 'pending' AND created_at = ?");

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
  };
}

export type NarsRepo = ReturnType<typeof createNarsRepo>;
