import { refuseBesideServer } from './serve-lease.js';
import type { CacheSettings, CacheInfoView, CacheUpdate, KeyView } from '../cache/caches.js';
import type { GcRunReport } from '../cache/cache-service.js';
import type { PinView } from '../cache/pins.js';
import type { CacheStats } from '../cache/cache-stats.js';
import { type Permission, type TokenView, tokenView } from '../cache/tokens.js';
import type { Config } from '../config/schema.js';
import { clientOptions, createHubClient } from './hub-client.js';
import { openRuntime } from './runtime.js';

export interface TokenRequest {
  cachePattern: string;
  permission: Permission;
  project?: string | undefined;
  name?: string | undefined;
  expiresAt?: number | undefined;
}

/**
 * What the admin commands (`cache`, `token`, `pin`, `key`, `gc`) do, against the local data directory or a
 * running narhub's `/api/v1` (`--server URL` or `$NARHUB_SERVER`, with an admin token).
 */
export interface AdminBackend {
  cacheCreate(name: string, settings: CacheSettings): Promise<CacheInfoView>;
  cacheList(): Promise<CacheInfoView[]>;
  cacheInfo(name: string): Promise<CacheInfoView>;
  cacheUpdate(name: string, change: CacheUpdate): Promise<CacheInfoView>;
  cacheStats(name: string): Promise<CacheStats>;
  gc(options: { cache?: string | undefined; dryRun?: boolean | undefined }): Promise<GcRunReport>;
  pinAdd(
    cache: string,
    storePath: string,
    opts: { name?: string | undefined; expiresAt?: number | null },
  ): Promise<PinView>;
  pinList(cache: string): Promise<PinView[]>;
  pinRemove(cache: string, name: string): Promise<void>;
  keyList(cache: string): Promise<KeyView[]>;
  keyRotate(cache: string): Promise<KeyView>;
  keyRetire(cache: string, key: string): Promise<KeyView>;
  keyImport(cache: string, secretKey: string): Promise<KeyView>;
  tokenCreate(request: TokenRequest): Promise<TokenView & { token: string }>;
  tokenList(): Promise<TokenView[]>;
  tokenRevoke(id: string): Promise<void>;
  close(): Promise<void>;
}

const enc = encodeURIComponent;

/**
 * Runs `work` against the admin backend (see `openAdminBackend`) and closes it afterwards, whether
 * `work` succeeded or threw.
 */
export async function withAdminBackend<T>(
  values: { server?: string | undefined; token?: string | undefined },
  loadConfig: () => Promise<Config>,
  work: (admin: AdminBackend) => Promise<T>,
): Promise<T> {
  const admin = await openAdminBackend(values, loadConfig);
  try {
    return await work(admin);
  } finally {
    await admin.close();
  }
}

/** The server when `--server` or `$NARHUB_SERVER` names one, else the data directory. */
async function openAdminBackend(
  values: { server?: string | undefined; token?: string | undefined },
  loadConfig: () => Promise<Config>,
  env = process.env,
): Promise<AdminBackend> {
  if (values.server === undefined && env.NARHUB_SERVER === undefined) return localBackend(loadConfig);
  const api = createHubClient(await clientOptions(values, async () => (await loadConfig()).dataDir, env));
  return {
    cacheCreate: (name, s) => api.post('/caches', { name, ...s }),
    cacheList: async () => (await api.get<{ caches: CacheInfoView[] }>('/caches')).caches,
    cacheInfo: (name) => api.get(`/caches/${enc(name)}`),
    cacheUpdate: (name, change) => api.patch(`/caches/${enc(name)}`, change),
    cacheStats: (name) => api.get(`/caches/${enc(name)}/stats`),
    gc: (o) => api.post('/gc', { ...(o.cache ? { cache: o.cache } : {}), dryRun: o.dryRun ?? false }),
    pinAdd: (cache, storePath, o) =>
      api.post(`/caches/${enc(cache)}/pins`, {
        storePath,
        ...(o.name ? { name: o.name } : {}),
        ...(o.expiresAt ? { expiresAt: new Date(o.expiresAt).toISOString() } : {}),
      }),
    pinList: async (cache) => (await api.get<{ pins: PinView[] }>(`/caches/${enc(cache)}/pins`)).pins,
    pinRemove: (cache, name) => api.delete(`/caches/${enc(cache)}/pins/${enc(name)}`),
    keyList: async (cache) => (await api.get<{ keys: KeyView[] }>(`/caches/${enc(cache)}/keys`)).keys,
    keyRotate: (cache) => api.post(`/caches/${enc(cache)}/keys/rotate`),
    keyRetire: (cache, key) => api.post(`/caches/${enc(cache)}/keys/${enc(key)}/retire`),
    keyImport: (cache, secretKey) => api.post(`/caches/${enc(cache)}/keys/import`, { secretKey }),
    tokenCreate: (r) =>
      api.post('/tokens', {
        ...(r.cachePattern ? { cache: r.cachePattern } : {}),
        permission: r.permission,
        ...(r.project ? { project: r.project } : {}),
        ...(r.name ? { name: r.name } : {}),
        ...(r.expiresAt ? { expiresAt: new Date(r.expiresAt).toISOString() } : {}),
      }),
    tokenList: async () => (await api.get<{ tokens: TokenView[] }>('/tokens')).tokens,
    tokenRevoke: (id) => api.delete(`/tokens/${enc(id)}`),
    close: async () => undefined,
  };
}

async function localBackend(loadConfig: () => Promise<Config>): Promise<AdminBackend> {
  const config = await loadConfig();
  const runtime = await openRuntime(config);
  const { service } = runtime;
  const { registry } = service;
  return {
    cacheCreate: async (name, s) => {
      await registry.create(name, s);
      return registry.info(name);
    },
    cacheList: async () => registry.list().map((c) => registry.info(c.name)),
    cacheInfo: async (name) => registry.info(name),
    cacheUpdate: async (name, change) => {
      await registry.update(name, change);
      return registry.info(name);
    },
    cacheStats: async (name) => service.stats(registry.require(name)),
    gc: (o) => {
      if (o.dryRun !== true) refuseBesideServer(runtime.db);
      return service.runGc({
        cache: o.cache,
        dryRun: o.dryRun,
        pendingGraceMs: config.gc.pendingGracePeriod * 1000,
        supersededGraceMs: config.gc.supersededGracePeriod * 1000,
      });
    },
    pinAdd: async (cache, storePath, o) => service.pins.add(registry.require(cache), storePath, o),
    pinList: async (cache) => service.pins.list(registry.require(cache)),
    pinRemove: async (cache, name) => service.pins.remove(registry.require(cache), name),
    keyList: async (cache) => registry.keys(cache),
    keyRotate: async (cache) => registry.rotateKey(cache),
    keyRetire: async (cache, key) => registry.retireKey(cache, key),
    keyImport: async (cache, secretKey) => registry.importKey(cache, secretKey),
    tokenCreate: async (r) => {
      const { token, row } = service.tokens.create(r);
      return { ...tokenView(row), token };
    },
    tokenList: async () => service.tokens.list().map((row) => tokenView(row)),
    tokenRevoke: async (id) => service.tokens.revoke(id),
    close: () => runtime.close(),
  };
}
