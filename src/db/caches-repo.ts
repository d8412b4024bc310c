import type { Database } from 'better-sqlite3';

export interface CacheSettingsRow {
  private: boolean;
  priority: number;
  redirectNars: boolean;
  redirectExpiry: number;
  recompressToZstd: boolean;
  /** GC policy: seconds since the last access after which a path goes; null keeps everything. */
  retention: number | null;
  /** GC policy: most bytes of NAR files the cache's paths may point at; null: no limit. */
  quota: number | null;
  /** Nix public keys (`name:base64`) whose signatures uploads may carry, verified at upload. */
  uploaderKeys: string[];
  /** Refuse signatures under names that are neither the cache's keys nor `uploaderKeys`. */
  refuseUnknownSignatures: boolean;
  /** Most signatures under names other than the cache's own one path may carry. */
  maxUploaderSignatures: number;
}

export interface CacheRow extends CacheSettingsRow {
  id: number;
  name: string;
  createdAt: number;
}

export type KeyState = 'active' | 'previous' | 'retired';

export interface SigningKeyRow {
  id: number;
  cacheId: number;
  name: string;
  publicKey: string;
  secretKeyFile: string;
  generation: number;
  /** Signs new paths: exactly one key of a cache is active. */
  active: boolean;
  state: KeyState;
  /** The narinfo rewrite this key's change asks for: paths with id <= passTarget; null: none. */
  passTarget: number | null;
  /** How far that rewrite has got (a path id). */
  passCursor: number;
  createdAt: number;
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
  retention: number | null;
  quota: number | null;
  uploader_keys: string;
  refuse_unknown_signatures: number;
  max_uploader_signatures: number;
}
interface RawKey {
  id: number;
  cache_id: number;
  name: string;
  public_key: string;
  secret_key_file: string;
  generation: number;
  active: number;
  state: KeyState;
  pass_target: number | null;
  pass_cursor: number;
  created_at: number;
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
  retention: r.retention,
  quota: r.quota,
  uploaderKeys: JSON.parse(r.uploader_keys) as string[],
  refuseUnknownSignatures: r.refuse_unknown_signatures === 1,
  maxUploaderSignatures: r.max_uploader_signatures,
});
const toKey = (r: RawKey): SigningKeyRow => ({
  id: r.id,
  cacheId: r.cache_id,
  name: r.name,
  publicKey: r.public_key,
  secretKeyFile: r.secret_key_file,
  generation: r.generation,
  active: r.state === 'active',
  state: r.state,
  passTarget: r.pass_target,
  passCursor: r.pass_cursor,
  createdAt: r.created_at,
});

function sqlSettings(s: CacheSettingsRow) {
  return {
    private: s.private ? 1 : 0,
    priority: s.priority,
    redirectNars: s.redirectNars ? 1 : 0,
    redirectExpiry: s.redirectExpiry,
    recompressToZstd: s.recompressToZstd ? 1 : 0,
    retention: s.retention,
    quota: s.quota,
    uploaderKeys: JSON.stringify(s.uploaderKeys),
    refuseUnknownSignatures: s.refuseUnknownSignatures ? 1 : 0,
    maxUploaderSignatures: s.maxUploaderSignatures,
  };
}

/** Caches and their signing keys. Statements are prepared once. */
export function createCachesRepo(db: Database) {
  const byName = db.prepare<[string], RawCache>('SELECT * FROM caches WHERE name = ?');
  const all = db.prepare<[], RawCache>('SELECT * FROM caches ORDER BY name');
  const insert =
    db.prepare(`INSERT INTO caches (name, private, priority, redirect_nars, redirect_expiry, recompress_to_zstd,
      retention, quota, uploader_keys, refuse_unknown_signatures, max_uploader_signatures, created_at)
    VALUES (@name, @private, @priority, @redirectNars, @redirectExpiry, @recompressToZstd, @retention, @quota,
      @uploaderKeys, @refuseUnknownSignatures, @maxUploaderSignatures, @createdAt)`);
  const update = db.prepare(`UPDATE caches SET private = @private, priority = @priority, redirect_nars = @redirectNars,
    redirect_expiry = @redirectExpiry, recompress_to_zstd = @recompressToZstd, retention = @retention, quota = @quota,
    uploader_keys = @uploaderKeys, refuse_unknown_signatures = @refuseUnknownSignatures,
    max_uploader_signatures = @maxUploaderSignatures
    WHERE id = @id`);
  const keysOf = db.prepare<[number], RawKey>('SELECT * FROM signing_keys WHERE cache_id = ? ORDER BY generation');
  const insertKey = db.prepare(
    `INSERT INTO signing_keys (cache_id, name, public_key, secret_key_file, generation, active, state, pass_target,
       created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const demoteActive = db.prepare(
    "UPDATE signing_keys SET state = 'previous', active = 0 WHERE cache_id = ? AND state = 'active'",
  );
  const setState = db.prepare(
    'UPDATE signing_keys SET state = ?, active = ?, pass_target = ?, pass_cursor = 0 WHERE id = ?',
  );
  const advance = db.prepare(
    'UPDATE signing_keys SET pass_cursor = min(pass_target, ?) ' +
      'WHERE cache_id = ? AND pass_target IS NOT NULL AND pass_cursor < ?',
  );
  const keysWithPass = db.prepare<[], RawKey>(
    'SELECT * FROM signing_keys WHERE pass_target IS NOT NULL AND pass_cursor < pass_target ORDER BY cache_id, id',
  );
  const pathsUpTo = db.prepare<[number, number], { n: number }>(
    'SELECT count(*) AS n FROM store_paths WHERE cache_id = ? AND id <= ?',
  );
  const maxPathId = db.prepare<[number], { m: number | null }>(
    'SELECT max(id) AS m FROM store_paths WHERE cache_id = ?',
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
    /**
     * Records a key. An active one (the default) takes over from the cache's active key, which
     * becomes previous; `rewrite` asks every existing narinfo to be signed by it (rotation).
     */
    insertKey(
      cacheId: number,
      name: string,
      publicKey: string,
      secretKeyFile: string,
      generation: number,
      opts: { state?: KeyState; rewrite?: boolean } = {},
    ): void {
      const state = opts.state ?? 'active';
      db.transaction(() => {
        if (state === 'active') demoteActive.run(cacheId);
        const target = opts.rewrite ? (maxPathId.get(cacheId)?.m ?? 0) : null;
        insertKey.run(
          cacheId,
          name,
          publicKey,
          secretKeyFile,
          generation,
          state === 'active' ? 1 : 0,
          state,
          target,
          Date.now(),
        );
      })();
    },
    /** Changes a key's state; `rewrite` asks every existing narinfo to be rewritten for it. */
    setKeyState(key: SigningKeyRow, state: KeyState, opts: { rewrite?: boolean } = {}): void {
      db.transaction(() => {
        if (state === 'active') demoteActive.run(key.cacheId);
        const target = opts.rewrite ? (maxPathId.get(key.cacheId)?.m ?? 0) : null;
        setState.run(state, state === 'active' ? 1 : 0, target, key.id);
      })();
    },
    /** Records that every path of the cache with id <= pathId has been rewritten. */
    advancePass(cacheId: number, pathId: number): void {
      advance.run(pathId, cacheId, pathId);
    },
    /** How many of the cache's paths have an id <= pathId (rewrite progress). */
    pathsUpTo(cacheId: number, pathId: number): number {
      return pathsUpTo.get(cacheId, pathId)?.n ?? 0;
    },
    /** Keys whose narinfo rewrite is not finished, of every cache. */
    keysWithPass(): SigningKeyRow[] {
      return keysWithPass.all().map(toKey);
    },
  };
}

export type CachesRepo = ReturnType<typeof createCachesRepo>;
