import type { Database } from 'better-sqlite3';
import { NarhubError } from '../errors.js';
import { parseCacheInfo } from '../nix/cache-info.js';
import { mapLimit } from '../io/map-limit.js';
import { createCachesRepo, type CacheRow, type CacheSettingsRow, type CachesRepo } from '../db/caches-repo.js';
import { createFilesRepo, type FilesRepo } from '../db/files-repo.js';
import { createNarsRepo, type NarsRepo } from '../db/nars-repo.js';
import { createPathsRepo, type PathsRepo } from '../db/paths-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { assertValidCacheName } from '../cache-name.js';
import { DEFAULT_MAX_UPLOADER_SIGNATURES, type CacheSettings } from './caches.js';
import { classify, probeEncoding, type SmallFileEntry } from './reindex-files.js';
import { restoreKeys } from './reindex-keys.js';
import {
  type CacheScan,
  type PathCounts,
  type PreparedPath,
  preparePath,
  readText,
  recordPaths,
} from './reindex-paths.js';

export interface ReindexDeps {
  db: Database;
  store: BlobStore;
  /** Where signing keys live: `<cache>-<N>.secret` files are restored as the cache's keys. */
  keysDir: string;
}

export interface ReindexOptions {
  /** Only this cache; every cache found in storage otherwise. */
  cache?: string | undefined;
  /**
   * Settings for a cache the database does not know (storage does not record them): e.g. its
   * declaration in the config. Unset fields default to private, the priority of its
   * `nix-cache-info`, and no redirects: a cache whose visibility is unknown is not made public.
   */
  settingsFor?: ((name: string) => Partial<CacheSettings> | undefined) | undefined;
  /** Told about everything skipped or guessed, one line each. */
  warn(message: string): void;
  /** Storage requests in flight at once (default 16). */
  concurrency?: number | undefined;
}

export interface ReindexSummary {
  cache: string;
  /** The cache had no row and was created from storage. */
  created: boolean;
  private: boolean;
  /** Names of the cache's signing keys after the run, oldest first. */
  keys: string[];
  /** A key was generated because none could be restored. */
  generatedKey: string | undefined;
  paths: { added: number; updated: number; unchanged: number; skipped: number };
  logs: number;
  listings: number;
  realisations: number;
  debuginfo: number;
  /** NAR files no restored narinfo points at (unclaimed or superseded uploads); left as they are. */
  unreferencedNars: number;
  /** Keys under the cache's prefix that narhub does not know what to do with. */
  unknownKeys: number;
}

/** Narinfos prepared (read, parsed, checked against storage) before one transaction records them. */
const BATCH = 256;

/** What one run of reindex works with. */
interface Run {
  db: Database;
  store: BlobStore;
  keysDir: string;
  options: ReindexOptions;
  limit: number;
  caches: CachesRepo;
  nars: NarsRepo;
  paths: PathsRepo;
  files: FilesRepo;
}

/**
 * Rebuilds the database's view of the caches from the blob store alone, which holds every
 * cache in Nix's own layout: a cache is a prefix holding `nix-cache-info`; its paths are its
 * signed `<hash>.narinfo` files whose NAR is present; logs, listings, realisations and
 * debuginfo are recorded as found. Signing keys come back from `<keysDir>/<cache>-N.secret`.
 * Idempotent: what the database already holds is kept, what it lacks is added, and a narinfo
 * that gained signatures in storage updates its path.
 */
export async function reindex(deps: ReindexDeps, options: ReindexOptions): Promise<ReindexSummary[]> {
  const { db } = deps;
  const run: Run = {
    ...deps,
    options,
    limit: options.concurrency ?? 16,
    caches: createCachesRepo(db),
    nars: createNarsRepo(db),
    paths: createPathsRepo(db),
    files: createFilesRepo(db),
  };
  const summaries: ReindexSummary[] = [];
  for (const name of await findCaches(run)) summaries.push(await reindexCache(run, name));
  return summaries;
}

async function findCaches(run: Run): Promise<string[]> {
  const { store, options } = run;
  if (options.cache !== undefined) {
    assertValidCacheName(options.cache);
    if (!(await store.stat(`${options.cache}/nix-cache-info`))) {
      throw new NarhubError(
        'CACHE_NOT_FOUND',
        `storage holds no cache ${options.cache} (no ${options.cache}/nix-cache-info)`,
      );
    }
    return [options.cache];
  }
  const names: string[] = [];
  for await (const key of store.list('')) {
    const m = /^([^/]+)\/nix-cache-info$/.exec(key);
    if (!m) continue;
    try {
      assertValidCacheName(m[1]!);
      names.push(m[1]!);
    } catch {
      options.warn(`${m[1]}: not a valid cache name, skipped`);
    }
  }
  return names.sort();
}

/** The cache's row, created from its declaration (else private) and `nix-cache-info` if the database lacks it. */
async function ensureCache(run: Run, name: string): Promise<{ cache: CacheRow; created: boolean }> {
  const { options } = run;
  const existing = run.caches.get(name);
  if (existing) return { cache: existing, created: false };
  let priority = 40;
  try {
    priority = parseCacheInfo((await readText(run.store, `${name}/nix-cache-info`)) ?? '').priority ?? 40;
  } catch {
    options.warn(`${name}: nix-cache-info has no valid Priority; using 40`);
  }
  const wanted = options.settingsFor?.(name) ?? {};
  const settings: CacheSettingsRow = {
    retention: wanted.retention ?? null,
    quota: wanted.quota ?? null,
    private: wanted.private ?? true,
    priority: wanted.priority ?? priority,
    redirectNars: wanted.redirectNars ?? false,
    redirectExpiry: wanted.redirectExpiry ?? 300,
    recompressToZstd: wanted.recompressToZstd ?? false,
    uploaderKeys: wanted.uploaderKeys ?? [],
    refuseUnknownSignatures: wanted.refuseUnknownSignatures ?? false,
    maxUploaderSignatures: wanted.maxUploaderSignatures ?? DEFAULT_MAX_UPLOADER_SIGNATURES,
  };
  if (wanted.private === undefined) {
    options.warn(
      `${name}: recreated as a private cache (storage does not record visibility); declare it in the config or ` +
        `reindex with --public to make it public`,
    );
  }
  return { cache: run.caches.insert(name, settings), created: true };
}

/** The cache's keys in storage, sorted into what each will become, in one pass. */
async function listCache(run: Run, name: string) {
  const narinfos: string[] = [];
  const narFiles = new Set<string>();
  const listingFiles = new Set<string>();
  const small: SmallFileEntry[] = [];
  const clientListings: SmallFileEntry[] = [];
  let unknownKeys = 0;
  for await (const key of run.store.list(`${name}/`)) {
    const rel = key.slice(name.length + 1);
    const entry = classify(rel, key);
    if (entry === 'narinfo') narinfos.push(rel.slice(0, -'.narinfo'.length));
    else if (entry === 'nar') narFiles.add(rel.slice('nar/'.length));
    else if (entry === 'listing') listingFiles.add(rel.slice('listing/'.length, -'.ls'.length));
    else if (entry === 'ignored') continue;
    else if (entry === undefined) unknownKeys++;
    else if (entry.kind === 'listing') clientListings.push(entry);
    else small.push(entry);
  }
  return { narinfos, narFiles, listingFiles, small, clientListings, unknownKeys };
}

async function reindexCache(run: Run, name: string): Promise<ReindexSummary> {
  const { db, options, paths, files } = run;
  const { warn } = options;
  // The priority is read before the row exists: the row is made with it.
  const { cache, created } = await ensureCache(run, name);
  const declared = options.settingsFor?.(name)?.signingKeyFile;
  const { keys, trusted, generated } = restoreKeys(run.caches, cache, run.keysDir, declared, warn);
  const listed = await listCache(run, name);
  if (listed.unknownKeys > 0)
    warn(`${name}: ${listed.unknownKeys} keys in storage are not part of a Nix binary cache; left alone`);

  const scan: CacheScan = { ...listed, store: run.store, cache, keys, trusted, referenced: new Set(), warn };
  const counts: PathCounts = { added: 0, updated: 0, unchanged: 0, skipped: 0 };
  const record = db.transaction((batch: PreparedPath[]) => recordPaths(run, cache, batch, counts, warn));
  for (let i = 0; i < listed.narinfos.length; i += BATCH) {
    const prepared = await mapLimit(listed.narinfos.slice(i, i + BATCH), run.limit, (h) => preparePath(scan, h));
    counts.skipped += prepared.filter((p) => p === undefined).length;
    record(prepared.filter((p): p is PreparedPath => p !== undefined));
  }

  // Small files; a client's listing only where narhub built none for a present path.
  const listingsFromClients = listed.clientListings.filter(
    (e) => paths.get(cache.id, e.name) && !files.get('listing', cache.id, e.name),
  );
  await recordSmallFiles(run, cache, [...listed.small, ...listingsFromClients]);
  // What the database holds now, whether this run or an earlier one recorded it.
  return {
    cache: name,
    created,
    private: cache.private,
    keys: run.caches.keys(cache.id).map((k) => k.name),
    generatedKey: generated,
    paths: counts,
    logs: files.count('log', cache.id),
    listings: files.count('listing', cache.id),
    realisations: files.count('realisation', cache.id) + files.count('build-trace', cache.id),
    debuginfo: files.count('debuginfo', cache.id),
    unreferencedNars: [...listed.narFiles].filter((f) => !scan.referenced.has(f)).length,
    unknownKeys: listed.unknownKeys,
  };
}

/** Records small files with their size and the Content-Encoding their first bytes tell. */
async function recordSmallFiles(run: Run, cache: CacheRow, entries: SmallFileEntry[]): Promise<void> {
  const sized = await mapLimit(entries, run.limit, async (entry) => {
    const probe = await probeEncoding(run.store, entry.key);
    return probe && { entry, ...probe };
  });
  run.db.transaction(() => {
    for (const found of sized) {
      if (!found) continue;
      const { entry, size, encoding } = found;
      const contentType = entry.kind === 'log' ? 'text/plain; charset=utf-8' : 'application/json';
      run.files.upsert(entry.kind, cache.id, entry.name, {
        storageKey: entry.key,
        size,
        contentType,
        contentEncoding: encoding,
      });
    }
  })();
}
