import type { Database } from 'better-sqlite3';
import { isNarhubError, NarhubError } from '../errors.js';
import { parseNarInfo } from '../nix/narinfo.js';
import { parseStorePath } from '../nix/store-path.js';
import { createCachesRepo } from '../db/caches-repo.js';
import { createFilesRepo } from '../db/files-repo.js';
import { createGcRepo } from '../db/gc-repo.js';
import { createPinsRepo } from '../db/pins-repo.js';
import { createNarsRepo, type NarRow } from '../db/nars-repo.js';
import { createPathsRepo } from '../db/paths-repo.js';
import { createTokensRepo } from '../db/tokens-repo.js';
import { createUpstreamsRepo } from '../db/upstreams-repo.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { createAccessLog } from './access-log.js';
import { createCacheFiles } from './cache-files.js';
import { type CacheStats, createStatsQueries } from './cache-stats.js';
import { createCacheRegistry } from './caches.js';
import { createKeyedLock } from '../io/keyed-lock.js';
import { type Compression, decompressBounded } from '../io/compression.js';
import { createWaitSlots } from '../io/wait-slots.js';
import { createGarbageCollector, type GcOptions, type GcReport } from './gc.js';
import { createNativeUpload, type ZstdOptions } from './native-upload.js';
import { createNarIngest } from './nar-ingest.js';
import { createNarSync } from './nar-sync.js';
import { memoizeNarinfos } from './narinfo-memo.js';
import { createPathCommit } from './narinfo-commit.js';
import { createPendingSweep } from './pending-sweep.js';
import { createPins } from './pins.js';
import { createRecompressor } from './recompress.js';
import { createSignatureRewriter } from './signature-rewrite.js';
import { createTokenService } from './tokens.js';
import { createSessionService } from './sessions.js';
import { createCacheBrowser } from './cache-browser.js';
import { createSessionsRepo } from '../db/sessions-repo.js';
import { createUploadHolds } from './upload-holds.js';
import { createPullThrough, DEFAULT_UPSTREAM_SETTINGS, type UpstreamSettings } from './upstream/pull-through.js';
import { createUpstreamAdmin } from './upstream/upstream-admin.js';
import { createUpstreamStats } from './upstream/upstream-stats.js';

export interface CacheServiceDeps {
  db: Database;
  store: BlobStore;
  /** Where generated signing keys are written (mode 0600). */
  keysDir: string;
  /** How narhub compresses NARs itself (native uploads, recompression); level 3, 2 workers by default. */
  zstd?: ZstdOptions | undefined;
  /** Pull-through caching: timeouts and TTLs (defaults in `upstream/pull-through.ts`). */
  upstream?: Partial<UpstreamSettings> | undefined;
  /** Where upstream downloads are spooled (`<dataDir>/upstream-spool`); a temporary directory when unset. */
  spoolDir?: string | undefined;
  /** How many xz decodes run at once, how many may wait, and for how long (`limits.xzDecodes`). */
  xzDecodes?: XzDecodeLimits | undefined;
}

export interface XzDecodeLimits {
  slots: number;
  queue: number;
  maxWaitMs: number;
}

/** `limits.xzDecodes` and `limits.xzDecodeQueue`'s defaults; the wait is half of `limits.bodyTimeout`'s. */
const DEFAULT_XZ_DECODES: XzDecodeLimits = { slots: 2, queue: 64, maxWaitMs: 30_000 };

export interface GcRunReport {
  dryRun: boolean;
  /** Unclaimed uploads removed (every cache). */
  pendingRemoved: number;
  /** NAR files superseded by their recompression, removed (every cache). */
  supersededRemoved: number;
  /** Multipart uploads a crashed put left in the store (S3), aborted once older than the pending grace period. */
  staleUploadsAborted: number;
  caches: GcReport[];
}

/** Most store paths a single missing-paths query may ask about. */
const MAX_MISSING_PATHS_QUERY = 100_000;

/** The cache domain, composed once at start and handed to the HTTP layer and the CLI. */
export function createCacheService(deps: CacheServiceDeps) {
  const { db, store, keysDir } = deps;
  const cachesRepo = createCachesRepo(db);
  const nars = createNarsRepo(db);
  // Narinfo reads are memoized for a second (see narinfo-memo.ts): the hottest request of all.
  const paths = memoizeNarinfos(createPathsRepo(db));
  const filesRepo = createFilesRepo(db);
  const registry = createCacheRegistry({ caches: cachesRepo, store, keysDir });
  const zstd = deps.zstd ?? { level: 3, workers: 2 };
  const gcRepo = createGcRepo(db);
  const access = createAccessLog({ gc: gcRepo });
  const holds = createUploadHolds({ gc: gcRepo });
  const narSync = createNarSync(store);
  const pathCommit = createPathCommit({
    db,
    store,
    nars,
    paths,
    files: filesRepo,
    registry,
    holds,
    access,
    narSync,
  });
  const narLock = createKeyedLock();
  const collect = createGarbageCollector({
    db,
    store,
    gc: gcRepo,
    nars,
    access,
    lock: narLock,
    forgetNarinfos: paths.forgetNarinfos,
  });
  const sweepPending = createPendingSweep({ nars, store });
  const statsQueries = createStatsQueries(db);
  /** Upload outcomes since start, `cache\toutcome\treason` → count, for the metrics. */
  const uploadOutcomes = new Map<string, number>();
  const outcome = (cache: CacheRow, what: 'committed' | 'rejected', reason: string) => {
    const key = `${cache.name}\t${what}\t${reason}`;
    uploadOutcomes.set(key, (uploadOutcomes.get(key) ?? 0) + 1);
  };
  /** Counts how an upload ended: committed (a new path), or rejected with its error code. */
  async function counted<T>(cache: CacheRow, work: () => Promise<T>): Promise<T> {
    try {
      const result = await work();
      if ((result as { created?: unknown }).created === true) outcome(cache, 'committed', '');
      return result;
    } catch (err) {
      outcome(cache, 'rejected', isNarhubError(err) ? err.code : 'INTERNAL');
      throw err;
    }
  }
  /** Narinfo reads per cache since start, for the metrics. */
  const reads = new Map<number, { hits: number; misses: number }>();
  const readsOf = (cacheId: number) => {
    let r = reads.get(cacheId);
    if (r === undefined) reads.set(cacheId, (r = { hits: 0, misses: 0 }));
    return r;
  };
  const recompressor = createRecompressor({
    db,
    store,
    nars,
    paths,
    registry,
    commit: pathCommit,
    lock: narLock,
    zstd,
  });
  const nativeUpload = createNativeUpload({
    store,
    nars,
    narSync,
    paths,
    commit: pathCommit,
    lock: narLock,
    zstd,
    // A pusher skips what the cache's upstreams serve (see upstreamKeyNames): fetched on commit.
    referencesFromUpstreams: (cache) =>
      pullThrough.enabled(cache) ? (refs) => pullThrough.fetchPaths(cache, refs) : undefined,
  });
  // Each xz decode may hold a dictionary of up to 80 MiB (io/codecs/xz-memlimit.ts): only so many
  // run at once, the rest wait their turn without reading their bodies.
  const xzDecodes = createWaitSlots({
    ...(deps.xzDecodes ?? DEFAULT_XZ_DECODES),
    what: 'xz decodes',
    retryAfterSeconds: 5,
  });
  const ingest = createNarIngest({ store, nars, narSync, xzDecodes });
  // Under the NAR's lock, as GC's deletion of a file of the same name (cache/gc.ts).
  const lockedIngest = (...args: Parameters<typeof ingest>) =>
    narLock.run(`${args[0].id}/${args[1]}`, () => ingest(...args));
  const upstreams = createUpstreamsRepo(db);
  const upstreamStats = createUpstreamStats();
  const pullThrough = createPullThrough({
    upstreams,
    nars,
    paths,
    store,
    // Not counted as an upload: narhub fetched it.
    ingestNar: lockedIngest,
    ownKeyNames: (cache) => new Set(registry.publicKeys(cache).map((k) => k.slice(0, k.indexOf(':')))),
    render: pathCommit.render,
    checkAgainstNar: pathCommit.checkAgainstNar,
    hold: pathCommit.hold,
    async commit(cache, hashPart, info) {
      const result = await pathCommit.commitInfo(cache, hashPart, info, { fromUpstream: true });
      recompressor.committed(cache, result.narId);
    },
    settings: { ...DEFAULT_UPSTREAM_SETTINGS, ...deps.upstream },
    stats: upstreamStats,
    spoolDir: deps.spoolDir,
  });

  const tokens = createTokenService({ tokens: createTokensRepo(db) });
  return {
    store,
    registry,
    tokens,
    /** Web UI sessions, each standing for a token. */
    sessions: createSessionService({ sessions: createSessionsRepo(db), tokens }),
    /** Read-only views for people: sizes, recent uploads, search. */
    browser: createCacheBrowser(db),
    ingestNar: (...args: Parameters<typeof ingest>) => counted(args[0], () => lockedIngest(...args)),
    /**
     * A small file (narinfo, log, listing) sent compressed, decoded whole up to `max` bytes; an xz
     * one takes its turn among the xz decodes.
     */
    async decodeSmallFile(raw: Buffer, compression: Compression, max: number, signal?: AbortSignal): Promise<Buffer> {
      const release = compression === 'xz' ? await xzDecodes.acquire(signal) : undefined;
      try {
        return await decompressBounded(raw, compression, max);
      } finally {
        release?.();
      }
    },
    async commitNarInfo(cache: CacheRow, hashPart: string, text: string) {
      const result = await counted(cache, async () => {
        try {
          return await pathCommit.commitNarInfo(cache, hashPart, text);
        } catch (err) {
          // Nix skipped uploading references an upstream offered (they looked present): fetch them.
          if (!isNarhubError(err) || err.code !== 'REFERENCE_MISSING' || !pullThrough.enabled(cache)) throw err;
          const info = parseNarInfo(text);
          const self = info.storePath.slice(info.storePath.lastIndexOf('/') + 1);
          await pullThrough.fetchPaths(
            cache,
            info.references.filter((r) => r !== self),
          );
          return pathCommit.commitNarInfo(cache, hashPart, text);
        }
      });
      recompressor.committed(cache, result.narId);
      return result;
    },
    /** Names of the keys a cache's upstreams are trusted under: what they sign, narhub can fetch. */
    upstreamKeyNames(cache: CacheRow): string[] {
      const names = upstreams.list(cache.id).flatMap((u) => u.publicKeys.map((k) => k.slice(0, k.indexOf(':'))));
      return [...new Set(names)].sort();
    },
    /** Managing each cache's upstreams. */
    upstreams: createUpstreamAdmin({ upstreams }),
    /** What a cache with upstreams does on a miss (`upstream/pull-through.ts`). */
    pullThrough,
    /** Counters per cache and upstream, for the metrics. */
    upstreamStats,
    /** narhub's native upload: metadata line, then the raw NAR; compressed to zstd and committed. */
    uploadPath: (...args: Parameters<typeof nativeUpload>) => counted(args[0], () => nativeUpload(...args)),
    recompressor,
    files: createCacheFiles({ store, files: filesRepo, paths }),
    sweepPending,
    pins: createPins({ pins: createPinsRepo(db), paths }),
    /** Re-signing and signature removal after key changes, in the background. */
    signatureRewriter: createSignatureRewriter({ store, caches: cachesRepo, paths, registry, commit: pathCommit }),
    /** GC of one cache: its policy, pins, orphans and logs (cache/gc.ts). */
    collectGarbage(cache: CacheRow, options: GcOptions): Promise<GcReport> {
      return collect(cache, options);
    },
    /**
     * A whole GC run: unclaimed uploads and superseded files past their grace periods (every
     * cache), then each cache (or the one named) by its policy, pins, orphans and logs.
     */
    async runGc(options: {
      cache?: string | undefined;
      dryRun?: boolean | undefined;
      pendingGraceMs: number;
      supersededGraceMs: number;
    }): Promise<GcRunReport> {
      const targets = options.cache === undefined ? registry.list() : [registry.require(options.cache)];
      const dryRun = options.dryRun ?? false;
      const pending = dryRun ? { removed: 0 } : await sweepPending(options.pendingGraceMs);
      const superseded = dryRun ? { removed: 0 } : await recompressor.sweepSuperseded(options.supersededGraceMs);
      // An upload in flight longer than a pending NAR is kept is no live upload's (S3 cannot say whose it is).
      const staleUploadsAborted = dryRun ? 0 : ((await store.abortStaleUploads?.(options.pendingGraceMs)) ?? 0);
      const caches: GcReport[] = [];
      for (const cache of targets) caches.push(await collect(cache, { dryRun, orphanGraceMs: options.pendingGraceMs }));
      return {
        dryRun,
        pendingRemoved: pending.removed,
        supersededRemoved: superseded.removed,
        staleUploadsAborted,
        caches,
      };
    },
    /** Paths, bytes and reads of one cache; `inServer` when this process serves the reads. */
    stats(cache: CacheRow, inServer = false): CacheStats {
      const s = statsQueries.all().get(cache.id) ?? { paths: 0, bytes: 0, pendingNars: 0, pendingBytes: 0 };
      const r = reads.get(cache.id) ?? { hits: 0, misses: 0 };
      return {
        cache: cache.name,
        ...s,
        narinfoHits: inServer ? r.hits : null,
        narinfoMisses: inServer ? r.misses : null,
      };
    },
    /** Paths and bytes of every cache by id (for the metrics, at scrape time). */
    allStats: () => statsQueries.all(),
    /** Completed GC runs per cache (every process's), for the metrics. */
    gcTotals: () => gcRepo.runTotals(),
    /** Upload outcomes since this process started: `cache\tcommitted|rejected\treason` → count. */
    uploadOutcomes: (): ReadonlyMap<string, number> => uploadOutcomes,
    /** Narinfo reads per cache id since this process started. */
    narinfoReads: (): ReadonlyMap<number, { hits: number; misses: number }> => reads,
    /** Writes recorded accesses now (shutdown). */
    flushAccesses: () => access.flush(),
    /** The signed narinfo of a committed path, or undefined. A read counts as an access for GC. */
    narinfo(cache: CacheRow, hashPart: string): string | undefined {
      const text = paths.narinfo(cache.id, hashPart);
      if (text === undefined) readsOf(cache.id).misses++;
      else {
        readsOf(cache.id).hits++;
        access.path(cache.id, hashPart);
      }
      return text;
    },
    /** A NAR file, but only once a narinfo made it valid. A read counts as an access for GC. */
    validNar(cache: CacheRow, fileName: string): NarRow | undefined {
      const row = nars.get(cache.id, fileName);
      if (row?.state !== 'valid') return undefined;
      access.nar(cache.id, fileName);
      return row;
    },
    /**
     * Where to send a client for a valid NAR's bytes instead of streaming them: a presigned
     * storage URL valid `redirectExpiry` seconds when the cache has `redirectNars` and the
     * store can presign (S3), else undefined. The caller has already checked read access.
     */
    async narRedirect(cache: CacheRow, nar: NarRow): Promise<string | undefined> {
      if (!cache.redirectNars || store.presignGet === undefined) return undefined;
      return store.presignGet(nar.storageKey, { expiresIn: cache.redirectExpiry });
    },
    pathCount(cache: CacheRow): number {
      return paths.count(cache.id);
    },
    /**
     * Which of `storePaths` (full paths, validated) the cache lacks, in the order asked and
     * without repeats, from one indexed query. A path counts as present only under its own name.
     */
    missingPaths(cache: CacheRow, storePaths: string[]): string[] {
      if (storePaths.length > MAX_MISSING_PATHS_QUERY) {
        throw new NarhubError(
          'BAD_REQUEST',
          `storePaths has ${storePaths.length} entries, ` +
            `more than the ${MAX_MISSING_PATHS_QUERY} one query may ask about`,
        );
      }
      const parsed = storePaths.map((p, i) => {
        try {
          return { path: p, ...parseStorePath(p) };
        } catch (err) {
          if (err instanceof NarhubError) throw new NarhubError(err.code, `storePaths[${i}]: ${err.message}`);
          throw err;
        }
      });
      const present = paths.presentAmong(cache.id, [...new Set(parsed.map((p) => p.hashPart))]);
      const seen = new Set<string>();
      const missing: string[] = [];
      for (const p of parsed) {
        if (seen.has(p.path)) continue;
        seen.add(p.path);
        if (present.get(p.hashPart) !== p.name) missing.push(p.path);
      }
      return missing;
    },
  };
}

export type CacheService = ReturnType<typeof createCacheService>;
