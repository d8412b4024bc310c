import type { Database } from 'better-sqlite3';

export interface CacheSettingsRow {
  private: boolean;
  priority: number;
  redirectNars: boolean;
  redirectExpiry: number;
  recompressToZstd: boolean;
}

export interface CacheRow extends CacheSettingsRow {
  id: number;
  name: string;
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

interface RawCache {
  id: number;
  name: string;
  private: number;
  priority: number;
  created_at: number;
  redirect_nars: number;
  redirect_expiry: number;
  recompress_to_zstd: number;
}
interface RawKey {
  id: number;
  cache_id: number;
  name: string;
  public_key: string;
  secret_key_file: string;
  generation: number;
  active: number;
}

const toCache = (r: RawCache): CacheRow => ({
  id: r.id,
  name: r.name,
  private: r.private === 1,
  priority: r.priority,
  createdAt: r.created_at,
  redirectNars: r.redirect_nars === 1,
  redirectExpiry: r.redirect_expiry,
  recompressToZstd: r.recompress_to_zstd === 1,
});
const toKey = (r: RawKey): SigningKeyRow => ({
  id: r.id,
  cacheId: r.cache_id,
  name: r.name,
  publicKey: r.public_key,
  secretKeyFile: r.secret_key_file,
  generation: r.generation,
  active: r.active === 1,
});

function sqlSettings(s: CacheSettingsRow) {
  return {
    private: s.private ? 1 : 0,
    priority: s.priority,
    redirectNars: s.redirectNars ? 1 : 0,
    redirectExpiry: s.redirectExpiry,
    recompressToZstd: s.recompressToZstd ? 1 : 0,
  };
}

/** Caches and their signing keys. Statements are prepared once. */
export function createCachesRepo(db: Database) {
  const byName = db.prepare<[string], RawCache>('SELECT * FROM caches WHERE name = ?');
  const all = db.prepare<[], RawCache>('SELECT * FROM caches ORDER BY name');
  const insert =
    db.prepare(`INSERT INTO caches (name, private, priority, redirect_nars, redirect_expiry, recompress_to_zstd, created_at)
    VALUES (@name, @private, @priority, @redirectNars, @redirectExpiry, @recompressToZstd, @createdAt)`);
  const update = db.prepare(`UPDATE caches SET private = @private, priority = @priority, redirect_nars = @redirectNars,
    redirect_expiry = @redirectExpiry, recompress_to_zstd = @recompressToZstd WHERE id = @id`);
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
    insert(name: string, settings: CacheSettingsRow): CacheRow {
      const createdAt = Date.now();
      const info = insert.run({ name, ...sqlSettings(settings), createdAt });
      return { id: Number(info.lastInsertRowid), name, ...settings, createdAt };
    },
    update(id: number, settings: CacheSettingsRow): void {
      update.run({ id, ...sqlSettings(settings) });
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
