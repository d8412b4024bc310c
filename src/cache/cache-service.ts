import type { Database } from 'better-sqlite3';
import { NarhubError } from '../errors.js';
import { parseStorePath } from '../nix/store-path.js';
import { createCachesRepo } from '../db/caches-repo.js';
import { createFilesRepo } from '../db/files-repo.js';
import { createNarsRepo, type NarRow } from '../db/nars-repo.js';
import { createPathsRepo } from '../db/paths-repo.js';
import { createTokensRepo } from '../db/tokens-repo.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { createCacheFiles } from './cache-files.js';
import { createCacheRegistry } from './caches.js';
import { createKeyedLock } from '../io/keyed-lock.js';
import { createNativeUpload, type ZstdOptions } from './native-upload.js';
import { createNarIngest } from './nar-ingest.js';
import { memoizeNarinfos } from './narinfo-memo.js';
import { createPathCommit } from './narinfo-commit.js';
import { createPendingSweep } from './pending-sweep.js';
import { createRecompressor } from './recompress.js';
import { createTokenService } from './tokens.js';
import { createSessionService } from './sessions.js';
import { createCacheBrowser } from './cache-browser.js';
import { createSessionsRepo } from '../db/sessions-repo.js';

export interface CacheServiceDeps {
  db: Database;
  store: BlobStore;
  /** Where generated signing keys are written (mode 0600). */
  keysDir: string;
  /** How narhub compresses NARs itself (native uploads, recompression); level 3, 2 workers by default. */
  zstd?: ZstdOptions | undefined;
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
  const pathCommit = createPathCommit({ db, store, nars, paths, files: filesRepo, registry });
  const narLock = createKeyedLock();
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
  const nativeUpload = createNativeUpload({ store, nars, paths, commit: pathCommit, lock: narLock, zstd });

  const tokens = createTokenService({ tokens: createTokensRepo(db) });
  return {
    store,
    registry,
    tokens,
    /** Web UI sessions, each standing for a token. */
    sessions: createSessionService({ sessions: createSessionsRepo(db), tokens }),
    /** Read-only views for people: sizes, recent uploads, search. */
    browser: createCacheBrowser(db),
    ingestNar: createNarIngest({ store, nars }),
    async commitNarInfo(cache: CacheRow, hashPart: string, text: string) {
      const result = await pathCommit.commitNarInfo(cache, hashPart, text);
      recompressor.committed(cache, result.narId);
      return result;
    },
    /** narhub's native upload: metadata line, then the raw NAR; compressed to zstd and committed. */
    uploadPath: nativeUpload,
    recompressor,
    files: createCacheFiles({ store, files: filesRepo, paths }),
    sweepPending: createPendingSweep({ nars, store }),
    /** The signed narinfo of a committed path, or undefined. */
    narinfo(cache: CacheRow, hashPart: string): string | undefined {
      return paths.narinfo(cache.id, hashPart);
    },
    /** A NAR file, but only once a narinfo made it valid. */
    validNar(cache: CacheRow, fileName: string): NarRow | undefined {
      const row = nars.get(cache.id, fileName);
      return row?.state === 'valid' ? row : undefined;
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
          `storePaths has ${storePaths.length} entries, more than the ${MAX_MISSING_PATHS_QUERY} one query may ask about`,
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
