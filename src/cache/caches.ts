import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NarhubError } from '../errors.js';
import { formatCacheInfo } from '../nix/cache-info.js';
import {
  formatPublicKey,
  formatSecretKey,
  parsePublicKey,
  parseSecretKey,
  publicKeyOf,
  type SecretKey,
} from '../nix/signing.js';
import type { CacheRow, CacheSettingsRow, CachesRepo, KeyState, SigningKeyRow } from '../db/caches-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { assertValidCacheName } from '../cache-name.js';
import { generateKeyFile, keyFileOf, keyName, readSecretKeyFile } from './key-files.js';

export interface CacheSettings {
  private: boolean;
  priority: number;
  /** Sign with this Nix secret key file instead of generating one. */
  signingKeyFile?: string | undefined;
  redirectNars?: boolean | undefined;
  redirectExpiry?: number | undefined;
  recompressToZstd?: boolean | undefined;
  /** GC: seconds without access after which a path goes; null keeps everything; undefined leaves it as it is. */
  retention?: number | null | undefined;
  /** GC: most bytes of NAR files; null: no limit; undefined leaves it as it is. */
  quota?: number | null | undefined;
  /** Uploader public keys (`name:base64`) whose signatures are verified and kept; undefined leaves them. */
  uploaderKeys?: string[] | undefined;
  /** Refuse signatures under any name but the cache's and the uploader keys'; undefined leaves it. */
  refuseUnknownSignatures?: boolean | undefined;
  /** Most signatures under other names than the cache's per path; undefined leaves it (default 8). */
  maxUploaderSignatures?: number | undefined;
}

/** Signatures under other names than the cache's a path may carry unless the cache says otherwise. */
export const DEFAULT_MAX_UPLOADER_SIGNATURES = 8;
/** The most a cache may allow: the signatures of one path are served in every narinfo. */
const MAX_UPLOADER_SIGNATURES_LIMIT = 64;

/** What may change on an existing cache (`cache update`); absent fields stay as they are. */
export type CacheUpdate = Partial<Omit<CacheSettingsRow, 'redirectNars' | 'redirectExpiry' | 'recompressToZstd'>>;

function settingsRow(s: CacheSettings, current?: CacheSettingsRow): CacheSettingsRow {
  return {
    private: s.private,
    priority: s.priority,
    redirectNars: s.redirectNars ?? false,
    redirectExpiry: s.redirectExpiry ?? 300,
    recompressToZstd: s.recompressToZstd ?? false,
    retention: s.retention === undefined ? (current?.retention ?? null) : s.retention,
    quota: s.quota === undefined ? (current?.quota ?? null) : s.quota,
    uploaderKeys: s.uploaderKeys ?? current?.uploaderKeys ?? [],
    refuseUnknownSignatures: s.refuseUnknownSignatures ?? current?.refuseUnknownSignatures ?? false,
    maxUploaderSignatures: s.maxUploaderSignatures ?? current?.maxUploaderSignatures ?? DEFAULT_MAX_UPLOADER_SIGNATURES,
  };
}

function checkPolicy(u: CacheUpdate): void {
  if (u.priority !== undefined && u.priority !== null && (!Number.isInteger(u.priority) || u.priority < 0))
    throw new NarhubError('BAD_REQUEST', `priority must be a whole number >= 0, got ${u.priority}`);
  if (u.retention !== undefined && u.retention !== null && (!Number.isSafeInteger(u.retention) || u.retention <= 0))
    throw new NarhubError('BAD_REQUEST', `retention must be a positive number of seconds, got ${u.retention}`);
  if (u.quota !== undefined && u.quota !== null && (!Number.isSafeInteger(u.quota) || u.quota < 0))
    throw new NarhubError('BAD_REQUEST', `quota must be a number of bytes >= 0, got ${u.quota}`);
  const max = u.maxUploaderSignatures;
  if (max !== undefined && (!Number.isInteger(max) || max < 0 || max > MAX_UPLOADER_SIGNATURES_LIMIT))
    throw new NarhubError(
      'BAD_REQUEST',
      `maxUploaderSignatures must be a whole number from 0 to ${MAX_UPLOADER_SIGNATURES_LIMIT}, got ${max}`,
    );
}

/**
 * Uploader keys must be Nix public keys (`name:base64`), listed once, and none may take the name
 * of one of the cache's own keys: a signature under those is the cache's, verified with its key.
 */
function checkUploaderKeys(keys: string[] | undefined, ownNames: Iterable<string>): string[] | undefined {
  if (keys === undefined) return undefined;
  const own = new Set(ownNames);
  const normalised = keys.map((k) => formatPublicKey(parsePublicKey(k.trim())));
  for (const key of normalised) {
    const name = key.slice(0, key.indexOf(':'));
    if (own.has(name))
      throw new NarhubError('KEY_INVALID', `uploader key ${name} has the name of one of the cache's own keys`);
  }
  return [...new Set(normalised)];
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
  /** GC policy: seconds since the last access; null keeps everything. */
  retention: number | null;
  /** GC policy: most bytes of NAR files; null: no limit. */
  quota: number | null;
  /** Uploader keys: signatures under their names are verified at upload and kept. */
  uploaderKeys: string[];
  /** Signatures under any other name than the cache's and the uploader keys' are refused. */
  refuseUnknownSignatures: boolean;
  /** Most signatures under other names than the cache's one path may carry. */
  maxUploaderSignatures: number;
  /** The keys clients should trust (every key but retired ones), `name:base64`, oldest first. */
  publicKeys: string[];
  keys: KeyView[];
  /** @deprecated kept for scripts written against earlier versions; see `keys`. */
  signingKeys: { name: string; active: boolean }[];
  createdAt: string;
}

export interface KeyView {
  name: string;
  publicKey: string;
  state: KeyState;
  createdAt: string;
  /**
   * The rewrite of existing narinfos this key's last change asked for: re-signing every path
   * (a key made active) or removing its signatures (a retired key). Null when none was asked.
   */
  rewrite: { done: number; total: number; complete: boolean } | null;
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

  /**
   * Adds a key and makes it active. A cache's first key is generated (or read from `keyFile`);
   * later ones ask for every existing narinfo to be signed by them (`rewrite`).
   */
  function addKey(cache: CacheRow, keyFile: string | undefined, opts: { rewrite?: boolean } = {}): SigningKeyRow {
    const generation = nextGeneration(caches, cache);
    if (keyFile) {
      const name = keyFileOf(keyFile).name;
      if (caches.keys(cache.id).some((k) => k.name === name))
        throw new NarhubError('KEY_INVALID', `cache ${cache.name} already has a key named ${name}`);
    }
    const key = keyFile ? keyFileOf(keyFile) : generateKeyFile(keysDir, cache.name, generation);
    caches.insertKey(cache.id, key.name, key.publicKey, key.file, generation, { rewrite: opts.rewrite ?? false });
    return caches.keys(cache.id).find((k) => k.name === key.name)!;
  }

  function keyView(k: SigningKeyRow): KeyView {
    let rewrite: KeyView['rewrite'] = null;
    if (k.passTarget !== null) {
      const total = caches.pathsUpTo(k.cacheId, k.passTarget);
      const done = k.passCursor >= k.passTarget ? total : caches.pathsUpTo(k.cacheId, k.passCursor);
      rewrite = { done, total, complete: k.passCursor >= k.passTarget };
    }
    return {
      name: k.name,
      publicKey: k.publicKey,
      state: k.state,
      createdAt: new Date(k.createdAt).toISOString(),
      rewrite,
    };
  }

  function requireKey(cache: CacheRow, name: string): SigningKeyRow {
    const key = caches.keys(cache.id).find((k) => k.name === name);
    if (!key) throw new NarhubError('NOT_FOUND', `cache ${cache.name} has no key named ${name}`);
    return key;
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
      checkPolicy(settings);
      const ownName = settings.signingKeyFile ? keyFileOf(settings.signingKeyFile).name : keyName(name, 1);
      const uploaderKeys = checkUploaderKeys(settings.uploaderKeys, [ownName]);
      const cache = caches.insert(name, settingsRow({ ...settings, uploaderKeys }));
      const { publicKey } = addKey(cache, settings.signingKeyFile);
      await writeCacheInfo(cache);
      return { cache, publicKey };
    },
    /** Brings a declared cache in line with its declaration, creating it if needed. */
    async ensure(name: string, settings: CacheSettings): Promise<{ cache: CacheRow; created: boolean }> {
      const existing = caches.get(name);
      if (!existing) return { cache: (await this.create(name, settings)).cache, created: true };
      checkPolicy(settings);
      const ownNames = caches.keys(existing.id).map((k) => k.name);
      const uploaderKeys = checkUploaderKeys(settings.uploaderKeys, ownNames);
      const wanted = settingsRow({ ...settings, uploaderKeys }, existing);
      const updated: CacheRow = { ...existing, ...wanted };
      const differs = (k: keyof CacheSettingsRow) => JSON.stringify(existing[k]) !== JSON.stringify(wanted[k]);
      if ((Object.keys(wanted) as (keyof CacheSettingsRow)[]).some(differs)) caches.update(existing.id, wanted);
      rows.delete(name);
      if (
        settings.signingKeyFile &&
        !caches.keys(existing.id).some((k) => k.secretKeyFile === settings.signingKeyFile)
      ) {
        addKey(updated, settings.signingKeyFile, { rewrite: true });
      }
      await writeCacheInfo(updated);
      return { cache: updated, created: false };
    },
    /**
     * Changes an existing cache's visibility, priority or GC policy. Every process sees it within
     * ROW_TTL_MS, so it takes effect without a restart.
     */
    async update(name: string, change: CacheUpdate): Promise<CacheRow> {
      const existing = this.require(name);
      checkPolicy(change);
      const uploaderKeys = checkUploaderKeys(
        change.uploaderKeys,
        caches.keys(existing.id).map((k) => k.name),
      );
      const defined = Object.fromEntries(
        Object.entries({ ...change, uploaderKeys }).filter(([, v]) => v !== undefined),
      );
      const updated: CacheRow = { ...existing, ...defined };
      caches.update(existing.id, updated);
      rows.delete(name);
      if (updated.priority !== existing.priority) await writeCacheInfo(updated);
      return updated;
    },
    /** The key new signatures are made with. */
    signingKey(cache: CacheRow): SecretKey {
      const active = caches.keys(cache.id).find((k) => k.state === 'active');
      if (!active) throw new NarhubError('KEY_INVALID', `cache ${cache.name} has no active signing key`);
      return readSecretKey(active.secretKeyFile);
    },
    /**
     * The keys a new path is signed with: the active one and every previous one, so that during
     * a rotation a client trusting either key can substitute every path, new ones included.
     */
    signingKeys(cache: CacheRow): SecretKey[] {
      const keys = caches.keys(cache.id).filter((k) => k.state !== 'retired');
      if (!keys.some((k) => k.state === 'active'))
        throw new NarhubError('KEY_INVALID', `cache ${cache.name} has no active signing key`);
      return keys.map((k) => readSecretKey(k.secretKeyFile));
    },
    /** Every key the cache ever had, retired ones included: a signature under their names must verify. */
    publicKeys(cache: CacheRow): string[] {
      return caches.keys(cache.id).map((k) => k.publicKey);
    },
    /** Names of retired keys, whose signatures narinfos no longer carry. */
    retiredKeyNames(cache: CacheRow): Set<string> {
      return new Set(
        caches
          .keys(cache.id)
          .filter((k) => k.state === 'retired')
          .map((k) => k.name),
      );
    },
    keys(name: string): KeyView[] {
      return caches.keys(this.require(name).id).map(keyView);
    },
    /**
     * `key rotate`: a new generation (`main-1` → `main-2`) becomes active; the previous active
     * key stays as `previous`, and every existing narinfo is re-signed in the background.
     */
    rotateKey(name: string): KeyView {
      const cache = this.require(name);
      return keyView(addKey(cache, undefined, { rewrite: true }));
    },
    /**
     * `key import`: adopts an existing Nix secret key (one clients already trust) as the active
     * key, copied into the keys directory; existing narinfos are re-signed with it.
     */
    importKey(name: string, secretKeyText: string): KeyView {
      const cache = this.require(name);
      const secret = parseSecretKey(secretKeyText);
      if (caches.keys(cache.id).some((k) => k.name === secret.name))
        throw new NarhubError('KEY_INVALID', `cache ${cache.name} already has a key named ${secret.name}`);
      const generation = nextGeneration(caches, cache);
      // Copied into the keys directory (the file given may be temporary), as `<cache>-<N>.secret`.
      mkdirSync(keysDir, { recursive: true, mode: 0o700 });
      const file = join(keysDir, `${keyName(cache.name, generation)}.secret`);
      writeFileSync(file, formatSecretKey(secret), { mode: 0o600, flag: 'wx' });
      chmodSync(file, 0o600);
      caches.insertKey(cache.id, secret.name, formatPublicKey(publicKeyOf(secret)), file, generation, {
        rewrite: true,
      });
      return keyView(requireKey(cache, secret.name));
    },
    /**
     * `key retire`: refused while the active key has not re-signed every path (clients trusting
     * only it could not substitute them). Then the key's signatures are removed in the background.
     */
    retireKey(name: string, keyName: string): KeyView {
      const cache = this.require(name);
      const key = requireKey(cache, keyName);
      if (key.state === 'active')
        throw new NarhubError('KEY_INVALID', `${keyName} is the active key of ${name}; rotate first`);
      if (key.state === 'retired') return keyView(key);
      const active = caches.keys(cache.id).find((k) => k.state === 'active');
      if (active && active.passTarget !== null && active.passCursor < active.passTarget) {
        const view = keyView(active);
        throw new NarhubError(
          'KEY_REWRITE_PENDING',
          `re-signing with ${active.name} is not complete (${view.rewrite!.done} of ${view.rewrite!.total} paths); ` +
            `retire ${keyName} once it is`,
        );
      }
      caches.setKeyState(key, 'retired', { rewrite: true });
      return keyView(requireKey(cache, keyName));
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
        retention: cache.retention,
        quota: cache.quota,
        uploaderKeys: cache.uploaderKeys,
        refuseUnknownSignatures: cache.refuseUnknownSignatures,
        maxUploaderSignatures: cache.maxUploaderSignatures,
        publicKeys: keys.filter((k) => k.state !== 'retired').map((k) => k.publicKey),
        keys: keys.map(keyView),
        signingKeys: keys.map((k) => ({ name: k.name, active: k.active })),
        createdAt: new Date(cache.createdAt).toISOString(),
      };
    },
  };
}

export type CacheRegistry = ReturnType<typeof createCacheRegistry>;
