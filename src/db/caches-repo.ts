import type { Database } from 'better-sqlite3';

export interface CacheRow {
  id: number;
  name: string;
  private: boolean;
  priority: number;
  createdAt: number;
}

export interface SigningKeyRow {
  id: number;
  cacheId: number;
  name: string;
  publicKey: string;
  secretKeyFile: string;
  generation: number;
  active: boolean;
}

interface RawCache { id: number; name: string; private: number; priority: number; created_at: number }
interface RawKey { id: number; cache_id: number; name: string; public_key: string; secret_key_file: string; generation: number; active: number }

const toCache = (r: RawCache): CacheRow => ({ id: r.id, name: r.name, private: r.private === 1, priority: r.priority, createdAt: r.created_at });
const toKey = (r: RawKey): SigningKeyRow => ({
  id: r.id, cacheId: r.cache_id, name: r.name, publicKey: r.public_key, secretKeyFile: r.secret_key_file, generation: r.generation, active: r.active === 1,
});

/** Caches and their signing keys. Statements are prepared once. */
export function createCachesRepo(db: Database) {
  const byName = db.prepare<[string], RawCache>('SELECT * FROM caches WHERE name = ?');
  const all = db.prepare<[], RawCache>('SELECT * FROM caches ORDER BY name');
  const insert = db.prepare('INSERT INTO caches (name, private, priority, created_at) VALUES (?, ?, ?, ?)');
  const update = db.prepare('UPDATE caches SET private = ?, priority = ? WHERE id = ?');
  const keysOf = db.prepare<[number], RawKey>('SELECT * FROM signing_keys WHERE cache_id = ? ORDER BY generation');
  const insertKey = db.prepare(
    'INSERT INTO signing_keys (cache_id, name, public_key, secret_key_file, generation, active, created_at) VALUES (?, ?, ?, ?, ?, 1, ?)',
  );

  return {
    get(name: string): CacheRow | undefined {
      const r = byName.get(name);
      return r && toCache(r);
    },
    list(): CacheRow[] {
      return all.all().map(toCache);
    },
    insert(name: string, isPrivate: boolean, priority: number): CacheRow {
      const now = Date.now();
      const info = insert.run(name, isPrivate ? 1 : 0, priority, now);
      return { id: Number(info.lastInsertRowid), name, private: isPrivate, priority, createdAt: now };
    },
    update(id: number, isPrivate: boolean, priority: number): void {
      update.run(isPrivate ? 1 : 0, priority, id);
    },
    keys(cacheId: number): SigningKeyRow[] {
      return keysOf.all(cacheId).map(toKey);
    },
    insertKey(cacheId: number, name: string, publicKey: string, secretKeyFile: string, generation: number): void {
      insertKey.run(cacheId, name, publicKey, secretKeyFile, generation, Date.now());
    },
  };
}

export type CachesRepo = ReturnType<typeof createCachesRepo>;
