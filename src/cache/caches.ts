import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NarhubError } from '../errors.js';
import { formatCacheInfo } from '../nix/cache-info.js';
import { formatPublicKey, formatSecretKey, generateKeyPair, parseSecretKey, publicKeyOf, type SecretKey } from '../nix/signing.js';
import type { CacheRow, CachesRepo } from '../db/caches-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { assertValidCacheName } from './cache-name.js';

export interface CacheSettings {
  private: boolean;
  priority: number;
  /** Sign with this Nix secret key file instead of generating one. */
  signingKeyFile?: string | undefined;
}

export interface CacheInfoView {
  name: string;
  private: boolean;
  priority: number;
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

  function readSecretKey(file: string): SecretKey {
    let key = loadedKeys.get(file);
    if (!key) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new NarhubError('KEY_INVALID', `cannot read signing key file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      key = parseSecretKey(text);
      loadedKeys.set(file, key);
    }
    return key;
  }

  function addKey(cache: CacheRow, keyFile: string | undefined): string {
    const generation = caches.keys(cache.id).reduce((g, k) => Math.max(g, k.generation), 0) + 1;
    let file: string;
    let secret: SecretKey;
    if (keyFile) {
      file = keyFile;
      secret = readSecretKey(file);
    } else {
      const pair = generateKeyPair(`${cache.name}-${generation}`);
      secret = pair.secret;
      mkdirSync(keysDir, { recursive: true, mode: 0o700 });
      file = join(keysDir, `${secret.name}.secret`);
      writeFileSync(file, formatSecretKey(secret), { mode: 0o600, flag: 'wx' });
      chmodSync(file, 0o600);
    }
    const publicKey = formatPublicKey(publicKeyOf(secret));
    caches.insertKey(cache.id, secret.name, publicKey, file, generation);
    return publicKey;
  }

  async function writeCacheInfo(cache: CacheRow): Promise<void> {
    const text = formatCacheInfo({ storeDir: '/nix/store', wantMassQuery: true, priority: cache.priority });
    await store.put(`${cache.name}/nix-cache-info`, Buffer.from(text), { contentType: 'text/x-nix-cache-info' });
  }

  return {
    get(name: string): CacheRow | undefined {
      return caches.get(name);
    },
    require(name: string): CacheRow {
      const cache = caches.get(name);
      if (!cache) throw new NarhubError('CACHE_NOT_FOUND', `no cache named ${name}`);
      return cache;
    },
    list(): CacheRow[] {
      return caches.list();
    },
    async create(name: string, settings: CacheSettings): Promise<{ cache: CacheRow; publicKey: string }> {
      assertValidCacheName(name);
      if (caches.get(name)) throw new NarhubError('CACHE_EXISTS', `cache ${name} already exists`);
      const cache = caches.insert(name, settings.private, settings.priority);
      const publicKey = addKey(cache, settings.signingKeyFile);
      await writeCacheInfo(cache);
      return { cache, publicKey };
    },
    /** Brings a declared cache in line with its declaration, creating it if needed. */
    async ensure(name: string, settings: CacheSettings): Promise<{ cache: CacheRow; created: boolean }> {
      const existing = caches.get(name);
      if (!existing) return { cache: (await this.create(name, settings)).cache, created: true };
      if (existing.private !== settings.private || existing.priority !== settings.priority) {
        caches.update(existing.id, settings.private, settings.priority);
      }
      const updated = { ...existing, private: settings.private, priority: settings.priority };
      if (settings.signingKeyFile && !caches.keys(existing.id).some((k) => k.secretKeyFile === settings.signingKeyFile)) {
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
        publicKeys: keys.map((k) => k.publicKey),
        signingKeys: keys.map((k) => ({ name: k.name, active: k.active })),
        createdAt: new Date(cache.createdAt).toISOString(),
      };
    },
  };
}

export type CacheRegistry = ReturnType<typeof createCacheRegistry>;
