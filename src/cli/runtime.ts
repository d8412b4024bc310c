import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from 'better-sqlite3';
import { createCacheService, type CacheService } from '../cache/cache-service.js';
import type { Config } from '../config/schema.js';
import { readS3CredentialFiles } from '../config/s3-credentials.js';
import { defaultMigrationsDir, migrate } from '../db/migrate.js';
import { openDatabase } from '../db/open.js';
import type { BlobStore } from '../storage/blob-store.js';
import { createLocalBlobStore } from '../storage/local-blob-store.js';

export interface Runtime {
  config: Config;
  db: Database;
  store: BlobStore;
  service: CacheService;
  /** True when this start created the database. */
  fresh: boolean;
  close(): Promise<void>;
}

/** The configured blob store; the S3 one (and the AWS SDK with it) is loaded only when configured. */
async function createBlobStore(config: Config): Promise<BlobStore> {
  switch (config.storage.type) {
    case 'local':
      return createLocalBlobStore({ root: config.storage.path ?? join(config.dataDir, 'store') });
    case 's3': {
      const s3 = config.storage;
      const { createS3BlobStore } = await import('../storage/s3-blob-store.js');
      return createS3BlobStore({
        bucket: s3.bucket,
        region: s3.region,
        endpoint: s3.endpoint,
        prefix: s3.prefix,
        forcePathStyle: s3.forcePathStyle,
        // Read once, here; the values go to the SDK and nowhere else.
        credentials: readS3CredentialFiles(s3),
        partSize: s3.partSize,
        queueSize: s3.queueSize,
      });
    }
  }
}

/** Opens the data directory: database (migrated), blob store and the cache domain over them. */
export async function openRuntime(config: Config): Promise<Runtime> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o750 });
  const db = openDatabase(join(config.dataDir, 'narhub.sqlite'));
  let fresh: boolean;
  try {
    const { applied } = migrate(db, defaultMigrationsDir());
    fresh = applied.includes('0001-initial.sql') || applied.some((a) => a.startsWith('0001'));
  } catch (err) {
    db.close();
    throw err;
  }
  let store: BlobStore;
  try {
    store = await createBlobStore(config);
  } catch (err) {
    db.close();
    throw err;
  }
  const service = createCacheService({
    db,
    store,
    keysDir: join(config.dataDir, 'keys'),
    zstd: config.zstd,
    upstream: {
      narinfoTimeoutMs: config.upstream.narinfoTimeout * 1000,
      narTimeoutMs: config.upstream.narTimeout * 1000,
      narMinRate: config.upstream.narMinRate,
      narMaxTimeMs: config.upstream.narMaxTime * 1000,
      negativeTtlMs: config.upstream.negativeTtl * 1000,
      offerTtlMs: config.upstream.offerTtl * 1000,
      maxNarSize: config.maxNarSize,
    },
    spoolDir: join(config.dataDir, 'upstream-spool'),
    xzDecodes: {
      slots: config.limits.xzDecodes,
      queue: config.limits.xzDecodeQueue,
      // A waiting upload reads nothing: it must have its turn before the body deadline cuts it.
      maxWaitMs: (config.limits.bodyTimeout * 1000) / 2,
    },
  });
  return {
    config,
    db,
    store,
    service,
    fresh,
    async close() {
      await service.pullThrough.close();
      await store.close();
      db.close();
    },
  };
}
