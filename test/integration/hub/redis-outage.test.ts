// Redis going away and coming back, with a real redis-server stopped and started again on its
// port (empty, as a Redis without persistence comes back): the cache serves throughout, /healthz
// says the hub's Redis is away without failing, errors are logged rate-limited, and the hub
// resumes by itself: queues announced again, lost jobs added again, events consumed again.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { parseConfig } from '../../../src/config/load.js';
import { createBuildsRepo } from '../../../src/db/builds-repo.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { buildApp } from '../../../src/http/app.js';
import { createHub } from '../../../src/hub/hub-service.js';
import { ACTIVE_QUEUES_KEY, type BuildJobData, type BuildJobResult } from '../../../src/protocol/build-jobs.js';
import { PROTOCOL_VERSION } from '../../../src/protocol/version.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { basic, makePath, upload, type TestApp } from '../../helpers/build-app.js';
import { freePort, waitFor } from '../../helpers/hub.js';
import { startRedis, type TestRedis } from '../../helpers/redis.js';

const QUEUE = 'build-x86_64-linux';
const A = `${'a'.repeat(32)}`;
const B = `${'b'.repeat(32)}`;

async function setup(t: TestContext, redisUrl: string) {
  const dataDir = mkdtempSync(join(tmpdir(), 'narhub-redis-outage-'));
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dataDir, 'store'), fsync: false });
  const service = createCacheService({ db, store, keysDir: join(dataDir, 'keys') });
  const { cache: main } = await service.registry.create('main', { private: false, priority: 40 });
  // Two builds, B needing A, as an evaluation records them (queued, no job yet).
  const builds = createBuildsRepo(db);
  for (const [hash, name] of [
    [A, 'a'],
    [B, 'b'],
  ] as const)
    builds.insert({
      drvHash: hash,
      drvPath: `${hash}-${name}.drv`,
      system: 'x86_64-linux',
      requiredFeatures: [],
      outputs: { out: `${hash.replace(/./g, (c) => (c === 'a' ? 'c' : 'd'))}-${name}` },
      queue: QUEUE,
      cacheId: main.id,
      priority: 0,
    });
  builds.addDep(B, A);
  const logLines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
          logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  );
  const hub = createHub({ db, cache: service, config: parseConfig({}).hub, redisUrl, logger });
  const app = await buildApp({ service, hub, maxNarSize: 1 << 20, maxSmallFileSize: 1 << 20 });
  await app.ready();
  const writeToken = service.tokens.create({ cachePattern: 'main', permission: 'write' }).token;
  // What the upload helpers need of a test app.
  const h = {
    request: (
      method: 'GET' | 'PUT',
      url: string,
      o: { body?: Buffer | string; headers?: Record<string, string> } = {},
    ) => app.inject({ method, url, headers: o.headers ?? {}, ...(o.body === undefined ? {} : { payload: o.body }) }),
    tokensFor: { main: { write: writeToken } },
  } as unknown as TestApp;
  t.after(async () => {
    await app.close();
    await hub.close();
    await store.close();
    db.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const health = async () =>
    JSON.parse((await app.inject({ method: 'GET', url: '/healthz' })).body) as {
      status: string;
      checks: Record<string, string>;
    };
  /** The cache at work: a path uploaded, then its narinfo read. */
  const cacheServes = async () => {
    const path = makePath();
    await upload(h, path, { auth: basic(writeToken) });
    const res = await app.inject({ method: 'GET', url: `/main/${path.hashPart}.narinfo` });
    assert.equal(res.statusCode, 200);
  };
  return { hub, app, builds, logLines, health, cacheServes };
}

/**
 * A simulated spoke: takes jobs from the real queue and reports success without building.
 * Closed by the test before its Redis stops (a BullMQ worker's close waits for Redis).
 */
function simulatedSpoke(url: string): { built: string[]; close(): Promise<void> } {
  const built: string[] = [];
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const worker = new Worker<BuildJobData, BuildJobResult>(
    QUEUE,
    async (job) => {
      built.push(job.data.drvHash);
      const now = Date.now();
      return {
        protocol: PROTOCOL_VERSION,
        spoke: 'simulated',
        attempt: job.data.attempt,
        outputs: job.data.outputs,
        startedAt: now,
        finishedAt: now,
        logPath: null,
      };
    },
    { connection },
  );
  worker.on('error', () => undefined);
  return {
    built,
    async close() {
      await worker.close();
      connection.disconnect();
    },
  };
}

const statusOf = (builds: ReturnType<typeof createBuildsRepo>, hash: string) => builds.get(hash)?.status;

test('Redis stopped and started again empty: the cache serves meanwhile, the hub resumes and builds what it lost', {
  timeout: 120_000,
}, async (t) => {
  let redis: TestRedis = await startRedis(t);
  const { hub, builds, logLines, health, cacheServes } = await setup(t, redis.url);
  await hub.start();
  assert.deepEqual(await health(), { status: 'ok', checks: { database: 'ok', storage: 'ok', redis: 'ok' } });
  await waitFor('the job of A to be added', async () => builds.get(A)?.enqueued);

  await redis.stop();
  const away = Date.now();
  await waitFor('the hub to see Redis gone', async () => (await health()).checks.redis !== 'ok', 10_000, 50);
  const h = await health();
  assert.equal(h.status, 'degraded', 'Redis away is not a failure of the cache');
  assert.match(h.checks.redis!, /reconnecting|connecting/);
  await cacheServes();
  assert.equal((await hub.build(A)).status, 'queued', 'the hub API reads its records without Redis');
  // ioredis retries every few hundred ms; the hub says so once, not each time.
  await sleep(3_000);
  await cacheServes();
  // Every connection, queue and event reader of the hub fails on each retry; one line says so.
  const warnings = logLines.filter((l) => Number(l.level) >= 40);
  assert.ok(
    warnings.some((l) => /^Redis error/.test(String(l.msg))),
    'the outage is logged',
  );
  assert.ok(warnings.length <= 2, `${warnings.length} warnings in ${Date.now() - away} ms: not rate-limited`);

  redis = await startRedis(t, { port: redis.port });
  await waitFor('the hub to reconnect', async () => (await health()).status === 'ok', 30_000, 100);
  assert.ok(logLines.some((l) => l.msg === 'Redis connection restored'));
  const check = new Redis(redis.url);
  t.after(() => check.quit());
  await waitFor(
    'the queue to be announced to spokes again',
    async () => (await check.sismember(ACTIVE_QUEUES_KEY, QUEUE)) === 1,
    30_000,
    100,
  );

  // The job of A was lost with Redis' data: the hub adds it again, and B follows A through the
  // events the hub consumes on its new connection.
  const spoke = simulatedSpoke(redis.url);
  t.after(() => spoke.close());
  await waitFor(
    'A and B to succeed',
    async () => statusOf(builds, A) === 'succeeded' && statusOf(builds, B) === 'succeeded',
    60_000,
    100,
  );
  assert.deepEqual(spoke.built, [A, B]);
  await spoke.close();
});

test('Redis away when the hub starts: serve starts anyway, and the hub resumes once Redis comes', {
  timeout: 120_000,
}, async (t) => {
  const port = await freePort();
  const { hub, builds, health, cacheServes } = await setup(t, `redis://127.0.0.1:${port}`);
  const started = Date.now();
  await hub.start();
  assert.ok(Date.now() - started < 10_000, 'start does not wait for Redis');
  assert.equal((await health()).status, 'degraded');
  await cacheServes();
  assert.equal(builds.get(A)?.enqueued, false);

  const redis = await startRedis(t, { port });
  await waitFor('the hub to connect', async () => (await health()).status === 'ok', 30_000, 100);
  const spoke = simulatedSpoke(redis.url);
  t.after(() => spoke.close());
  await waitFor(
    'A and B to succeed',
    async () => statusOf(builds, A) === 'succeeded' && statusOf(builds, B) === 'succeeded',
    60_000,
    100,
  );
  assert.deepEqual(spoke.built, [A, B]);
  await spoke.close();
});

test('the hub stops promptly while Redis is away', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis(t);
  const { hub } = await setup(t, redis.url);
  await hub.start();
  await redis.stop();
  await waitFor('the hub to see Redis gone', async () => hub.health().redis !== 'ok', 10_000, 50);
  const stopping = Date.now();
  await hub.close();
  assert.ok(Date.now() - stopping < 5_000, `close took ${Date.now() - stopping} ms`);
  assert.equal(hub.health().redis, 'stopped');
});
