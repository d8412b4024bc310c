import type { Database } from 'better-sqlite3';

export interface PinRow {
  cacheId: number;
  name: string;
  /** Basename, `<hash>-<name>`. */
  storePath: string;
  expiresAt: number | null;
  createdAt: number;
}

interface RawPin {
  cache_id: number;
  name: string;
  store_path: string;
  expires_at: number | null;
  created_at: number;
}

const toPin = (r: RawPin): PinRow => ({
  cacheId: r.cache_id,
  name: r.name,
  storePath: r.store_path,
  expiresAt: r.expires_at,
  createdAt: r.created_at,
});

/** Named pins: each keeps a path's closure from GC until it expires or is removed. */
export function createPinsRepo(db: Database) {
  const insert = db.prepare(
    'INSERT INTO pins (cache_id, name, store_path, expires_at, created_at) ' +
      'VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
  );
  const list = db.prepare<[number], RawPin>('SELECT * FROM pins WHERE cache_id = ? ORDER BY name');
  const remove = db.prepare('DELETE FROM pins WHERE cache_id = ? AND name = ?');
  return {
    /** False when the cache already has a pin of that name. */
    insert(pin: PinRow): boolean {
      return insert.run(pin.cacheId, pin.name, pin.storePath, pin.expiresAt, pin.createdAt).changes > 0;
    },
    list(cacheId: number): PinRow[] {
      return list.all(cacheId).map(toPin);
    },
    remove(cacheId: number, name: string): boolean {
      return remove.run(cacheId, name).changes > 0;
    },
  };
}

export type PinsRepo = ReturnType<typeof createPinsRepo>;
