import type { Database } from 'better-sqlite3';
import { createCachesRepo } from '../db/caches-repo.js';
import { createFilesRepo } from '../db/files-repo.js';
import { createNarsRepo, type NarRow } from '../db/nars-repo.js';
import { createPathsRepo } from '../db/paths-repo.js';
import { createTokensRepo } from '../db/tokens-repo.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { createCacheFiles } from './cache-files.js';
import { createCacheRegistry } from './caches.js';
import { createNarIngest } from './nar-ingest.js';
import { createNarInfoCommit } from './narinfo-commit.js';
import { createPendingSweep } from './pending-sweep.js';
import { createTokenService } from './tokens.js';

export interface CacheServiceDeps {
  db: Database;
  store: BlobStore;
  /** Where generated signing keys are written (mode 0600). */
  keysDir: string;
}

/** The cache domain, composed once at start and handed to the HTTP layer and the CLI. */
export function createCacheService(deps: CacheServiceDeps) {
  const { db, store, keysDir } = deps;
  const cachesRepo = createCachesRepo(db);
  const nars = createNarsRepo(db);
  const paths = createPathsRepo(db);
  const filesRepo = createFilesRepo(db);
  const registry = createCacheRegistry({ caches: cachesRepo, store, keysDir });

  return {
    store,
    registry,
    tokens: createTokenService({ tokens: createTokensRepo(db) }),
    ingestNar: createNarIngest({ store, nars }),
    commitNarInfo: createNarInfoCommit({ db, store, nars, paths, files: filesRepo, registry }),
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
    pathCount(cache: CacheRow): number {
      return paths.count(cache.id);
    },
  };
}

export type CacheService = ReturnType<typeof createCacheService>;
