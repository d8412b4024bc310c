import { NarhubError } from '../errors.js';
import { formatCacheInfo } from '../nix/cache-info.js';
import type { SecretKey } from '../nix/signing.js';
import type { CacheRow, CacheSettingsRow, CachesRepo } from '../db/caches-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { assertValidCacheName } from '../cache-name.js';
import { generateKeyFile, keyFileOf, readSecretKeyFile } from './key-files.js';

export interface CacheSettings {
  private: boolean;
  priority: number;
  /** Sign with this Nix secret key file instead of generating one. */
  signingKeyFile?: string | undefined;
  redirectNars?: boolean | undefined;
  redirectExpiry?: number | undefined;
  recompressToZstd?: boolean | undefined;
}

function settingsRow(s: CacheSettings): CacheSettingsRow {
  return {
    private: s.private,
    priority: s.priority,
    redirectNars: s.redirectNars ?? false,
    redirectExpiry: s.redirectExpiry ?? 300,
    recompressToZstd: s.recompressToZstd ?? false,
  };
}

/** The generation of a cache's next key: one past its newest. */
export function nextGeneration(caches: CachesRepo, cache: CacheRow): number {
  return caches.keys(cache.id).reduce((g, k) => Math.max(g, k.generation), 0) + 1;
}

/** How long a looked-up cache row is reused before it is read from the database again. */
const ROW_TTL_MS = 1000;

export interface CacheInfoView {
  name: string;
  private: boolean;
  priority: number;
  redirectNars: boolean;
  redirectExpiry: number;
  recompressToZstd: boolean;
  publicKeys: string[];
  signingKeys: { name: string; active: boolean }[];
  createdAt: string;
}

/**
 * Caches and their signing keys. Generated secret keys are written to `<keysDir>` with mode
 * 0600 and only their file name is recorded, so the database never holds a secret.
 */
export function createCacheRegistry(deps: { caches: CachesRepo; store: BlobStore; keysDir: string }) {
  const { caches, store, keysDir } = deps;
  const loadedKeys = new Map<string, SecretKey>();

  /**
   * Rows by name for the read path, where every request looks its cache up (a SQLite read
   * transaction costs about as much as the rest of a narinfo GET). A row changes only through
   * `ensure` (at start, in this process, which forgets it); anything another process might do
   * is seen within ROW_TTL_MS. Misses are never kept, so a cache the admin CLI creates serves
   * at once, and only existing caches take memory.
   */
  const rows = new Map<string, { row: CacheRow; until: number }>();
  function lookup(name: string): CacheRow | undefined {
    const now = Date.now();
    const hit = rows.get(name);
    if (hit !== undefined && hit.until > now) return hit.row;
    const row = caches.get(name);
    if (row === undefined) rows.delete(name);
    else rows.set(name, { row: Object.freeze(row), until: now + ROW_TTL_MS });
    return row;
  }

  function readSecretKey(file: string): SecretKey {
    let key = loadedKeys.get(file);
    if (!key) {
      key = readSecretKeyFile(file);
      loadedKeys.set(file, key);
    }
    return key;
  }

  function addKey(cache: CacheRow, keyFile: string | undefined): string {
    const generation = nextGeneration(caches, cache);
    const key = keyFile ? keyFileOf(keyFile) : generateKeyFile(keysDir, cache.name, generation);
    caches.insertKey(cache.id, key.name, key.publicKey, key.file, generation);
    return key.publicKey;
  }

  async function writeCacheInfo(cache: CacheRow): Promise<void> {
    const text = formatCacheInfo({ storeDir: '/nix/store', wantMassQuery: true, priority: cache.priority });
    await store.put(`${cache.name}/nix-cache-info`, Buffer.from(text), { contentType: 'text/x-nix-cache-info' });
  }

  return {
    get(name: string): CacheRow | undefined {
      return lookup(name);
    },
    require(name: string): CacheRow {
      const cache = lookup(name);
      if (!cache) throw new NarhubError('CACHE_NOT_FOUND', `no cache named ${name}`);
      return cache;
    },
    list(): CacheRow[] {
      return caches.list();
    },
    async create(name: string, settings: CacheSettings): Promise<{ cache: CacheRow; publicKey: string }> {
      assertValidCacheName(name);
      if (caches.get(name)) throw new NarhubError('CACHE_EXISTS', `cache ${name} already exists`);
      const cache = caches.insert(name, settingsRow(settings));
      const publicKey = addKey(cache, settings.signingKeyFile);
      await writeCacheInfo(cache);
      return { cache, publicKey };
    },
    /** Brings a declared cache in line with its declaration, creating it if needed. */
    async ensure(name: string, settings: CacheSettings): Promise<{ cache: CacheRow; created: boolean }> {
      const existing = caches.get(name);
      if (!existing) return { cache: (await this.create(name, settings)).cache, created: true };
      const wanted = settingsRow(settings);
      const updated: CacheRow = { ...existing, ...wanted };
      if ((Object.keys(wanted) as (keyof CacheSettingsRow)[]).some((k) => existing[k] !== wanted[k]))
        caches.update(existing.id, wanted);
      rows.delete(name);
      if (
        settings.signingKeyFile &&
        !caches.keys(existing.id).some((k) => k.secretKeyFile === settings.signingKeyFile)
      ) {
        addKey(updated, settings.signingKeyFile);
      }
      await writeCacheInfo(updated);
      return { cache: updated, created: false };
    },
    /** The key new signatures are made with: the newest active one. */
    signingKey(cache: CacheRow): SecretKey {
      const active = caches.keys(cache.id).filter((k) => k.active);
      const newest = active[active.length - 1];
      if (!newest) throw new NarhubError('KEY_INVALID', `cache ${cache.name} has no active signing key`);
      return readSecretKey(newest.secretKeyFile);
    },
    publicKeys(cache: CacheRow): string[] {
      return caches.keys(cache.id).map((k) => k.publicKey);
    },
    info(name: string): CacheInfoView {
      const cache = this.require(name);
      const keys = caches.keys(cache.id);
      return {
        name: cache.name,
        private: cache.private,
        priority: cache.priority,
        redirectNars: cache.redirectNars,
        redirectExpiry: cache.redirectExpiry,
        recompressToZstd: cache.recompressToZstd,
        publicKeys: keys.map((k) => k.publicKey),
        signingKeys: keys.map((k) => ({ name: k.name, active: k.active })),
        createdAt: new Date(cache.createdAt).toISOString(),
      };
    },
  };
}

export type CacheRegistry = ReturnType<typeof createCacheRegistry>;
