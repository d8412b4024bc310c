// A build's stored log is sent through `pipeline`: a read that fails half-way ends the response
// with an error (the connection is cut before the whole body), it never leaves it hanging.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import pino from 'pino';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { parseConfig } from '../../../src/config/load.js';
import { createBuildsRepo } from '../../../src/db/builds-repo.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { buildApp } from '../../../src/http/app.js';
import { createHub } from '../../../src/hub/hub-service.js';
import type { BlobStore } from '../../../src/storage/blob-store.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';

const DRV_HASH = `${'0'.repeat(31)}b`;
const DRV = `${DRV_HASH}-hello.drv`;
/** Large enough that the first half is sent (and the headers with it) before the read fails. */
const LOG = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i} of the build\n`).join(''));

/** The local store, except that reading a log yields its first half and then fails with EIO. */
function failingLogReads(store: BlobStore): BlobStore {
  return Object.assign(Object.create(store) as BlobStore, {
    async get(key: string, options?: Parameters<BlobStore['get']>[1]) {
      const read = await store.get(key, options);
      if (!read || !key.includes('/log/')) return read;
      const chunks: Buffer[] = [];
      for await (const c of read.stream) chunks.push(c as Buffer);
      const whole = Buffer.concat(chunks);
      const half = whole.subarray(0, whole.length >> 1);
      const stream = Readable.from(
        (async function* () {
          yield half;
          await new Promise((r) => setTimeout(r, 500));
          throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
        })(),
      );
      return { stream, size: read.size, totalSize: read.totalSize };
    },
  });
}

async function setup(t: TestContext) {
  const dataDir = mkdtempSync(join(tmpdir(), 'narhub-stored-log-'));
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const local = createLocalBlobStore({ root: join(dataDir, 'store'), fsync: false });
  const service = createCacheService({ db, store: failingLogReads(local), keysDir: join(dataDir, 'keys') });
  const { cache: main } = await service.registry.create('main', { private: false, priority: 40 });
  createBuildsRepo(db).insert({
    drvHash: DRV_HASH,
    drvPath: DRV,
    system: 'x86_64-linux',
    requiredFeatures: [],
    outputs: { out: `${'1'.repeat(32)}-hello` },
    queue: 'build-x86_64-linux',
    cacheId: main.id,
    priority: 0,
  });
  // The hub's log route needs no Redis for a stored log.
  const hub = createHub({
    db,
    cache: service,
    config: parseConfig({}).hub,
    redisUrl: 'redis://127.0.0.1:1',
    logger: pino({ level: 'silent' }),
  });
  const app = await buildApp({ service, hub, maxNarSize: 1 << 20, maxSmallFileSize: 1 << 20 });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(async () => {
    await app.close();
    await hub.close();
    await local.close();
    db.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return { url, service, main };
}

/** The body as far as it came, and how the response ended: 'complete' or the error that cut it. */
async function readLog(url: string): Promise<{ status: number; bytes: number; ended: string }> {
  const res = await fetch(`${url}/api/v1/builds/${DRV_HASH}/log`, { signal: AbortSignal.timeout(15_000) });
  let bytes = 0;
  try {
    const reader = res.body!.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) bytes += r.value.length;
    return { status: res.status, bytes, ended: 'complete' };
  } catch (err) {
    const e = err as Error & { cause?: Error };
    return { status: res.status, bytes, ended: `${e.name}: ${e.cause?.message ?? e.message}` };
  }
}

for (const encoding of ['gzip', undefined] as const) {
  test(`a stored log${encoding ? ` (${encoding})` : ''} failing half-way: the response is cut at once`, async (t) => {
    const { url, service, main } = await setup(t);
    await service.files.put('log', main, DRV, {
      body: encoding === 'gzip' ? gzipSync(LOG) : LOG,
      contentEncoding: encoding,
    });
    const started = Date.now();
    const res = await readLog(url);
    if (res.status === 200) {
      // The usual case: the first half went out, then the connection is cut.
      assert.ok(res.bytes < LOG.length, `${res.bytes} of ${LOG.length} bytes arrived`);
      assert.notEqual(res.ended, 'complete', 'a truncated log is never presented as a whole one');
    } else {
      // On a loaded machine the read may fail before the first bytes left: then a plain 500.
      assert.equal(res.status, 500, res.ended);
    }
    assert.doesNotMatch(res.ended, /TimeoutError|aborted due to timeout/, `the response hung: ${res.ended}`);
    assert.ok(Date.now() - started < 10_000);
  });
}
