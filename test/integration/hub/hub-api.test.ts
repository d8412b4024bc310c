// The hub's /api/v1 routes through app.inject, with a real redis-server and the real database:
// schemas, the JSON error format, and who may read and write what.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import pino from 'pino';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { parseConfig } from '../../../src/config/load.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { buildApp } from '../../../src/http/app.js';
import { createHub } from '../../../src/hub/hub-service.js';
import { logStreamKey, spokeKey, type SpokeHeartbeat } from '../../../src/protocol/build-jobs.js';
import { createBuildsRepo } from '../../../src/db/builds-repo.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { waitFor } from '../../helpers/hub.js';
import { startRedis } from '../../helpers/redis.js';

async function setup(t: TestContext) {
  const redis = await startRedis(t);
  const dataDir = mkdtempSync(join(tmpdir(), 'narhub-hub-api-'));
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dataDir, 'store'), fsync: false });
  const service = createCacheService({ db, store, keysDir: join(dataDir, 'keys') });
  await service.registry.create('main', { private: false, priority: 40 });
  await service.registry.create('secret', { private: true, priority: 40 });
  const token = (cache: string, permission: 'read' | 'write' | 'admin') =>
    service.tokens.create({ cachePattern: cache, permission }).token;
  const hub = createHub({
    db,
    cache: service,
    config: parseConfig({}).hub,
    redisUrl: redis.url,
    logger: pino({ level: 'silent' }),
  });
  const app = await buildApp({ service, hub, maxNarSize: 1 << 20, maxSmallFileSize: 1 << 20 });
  await app.ready();
  await hub.start();
  t.after(async () => {
    await app.close();
    await hub.close();
    await store.close();
    db.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const call = async (
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    url: string,
    o: { token?: string; body?: unknown } = {},
  ) => {
    const res = await app.inject({
      method,
      url: `/api/v1${url}`,
      headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
      ...(o.body === undefined ? {} : { payload: o.body as object }),
    });
    return {
      status: res.statusCode,
      body: res.body ? (JSON.parse(res.body) as any) : undefined,
      type: res.headers['content-type'],
    };
  };
  return { redis, call, token, hub, app, db, service };
}

test('projects: admin on the cache to write, read rights (or a public cache) to read, JSON errors', async (t) => {
  const { call, token } = await setup(t);
  const project = { name: 'demo', flake: 'git+https://example.org/demo.git', ref: 'main', cache: 'main' };

  const anon = await call('POST', '/projects', { body: project });
  assert.equal(anon.status, 401);
  assert.match(String(anon.type), /application\/json/);
  assert.equal(anon.body.code, 'UNAUTHORIZED');
  assert.equal((await call('POST', '/projects', { body: project, token: token('main', 'write') })).status, 403);
  assert.equal((await call('POST', '/projects', { body: project, token: token('secret', 'admin') })).status, 403);

  const admin = token('*', 'admin');
  const created = await call('POST', '/projects', { body: project, token: admin });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(
    {
      systems: created.body.systems,
      attrs: created.body.attrs,
      ref: created.body.ref,
      cache: created.body.cache,
      priority: created.body.priority,
    },
    { systems: ['x86_64-linux'], attrs: ['checks'], ref: 'main', cache: 'main', priority: 0 },
  );
  assert.equal((await call('POST', '/projects', { body: project, token: admin })).status, 400, 'names are unique');

  for (const bad of [
    { ...project, name: 'other', extra: 1 },
    { ...project, name: 'other', flake: 'https://example.org/x' },
    { ...project, name: 'other', attrs: ['apps'] },
    { ...project, name: 'Bad Name' },
    { ...project, name: 'other', priority: 5000 },
    { name: 'other', flake: 'path:/src', ref: 'main', cache: 'main' },
  ]) {
    const res = await call('POST', '/projects', { body: bad, token: admin });
    assert.equal(res.status, 400, JSON.stringify(bad));
    assert.equal(res.body.code, 'BAD_REQUEST');
  }
  assert.equal(
    (await call('POST', '/projects', { body: { ...project, name: 'other', cache: 'nope' }, token: admin })).status,
    404,
  );

  // A project of a private cache: readable with a read token of that cache only.
  assert.equal(
    (await call('POST', '/projects', { body: { ...project, name: 'hidden', cache: 'secret' }, token: admin })).status,
    201,
  );
  assert.equal((await call('GET', '/projects/demo')).status, 200, 'a public cache is readable by anyone');
  assert.equal((await call('GET', '/projects/hidden')).status, 401);
  assert.equal((await call('GET', '/projects/hidden', { token: token('main', 'read') })).status, 401);
  assert.equal((await call('GET', '/projects/hidden', { token: token('secret', 'read') })).status, 200);
  assert.deepEqual(
    (await call('GET', '/projects')).body.projects.map((p: { name: string }) => p.name),
    ['demo'],
  );
  assert.deepEqual(
    (await call('GET', '/projects', { token: token('secret', 'read') })).body.projects.map(
      (p: { name: string }) => p.name,
    ),
    ['demo', 'hidden'],
  );

  const patched = await call('PATCH', '/projects/demo', {
    body: { ref: 'release', systems: ['x86_64-linux', 'aarch64-linux'] },
    token: admin,
  });
  assert.equal(patched.status, 200);
  assert.equal(patched.body.ref, 'release');
  assert.deepEqual(patched.body.systems, ['x86_64-linux', 'aarch64-linux']);

  assert.equal((await call('DELETE', '/projects/demo', { token: token('main', 'read') })).status, 403);
  assert.equal((await call('DELETE', '/projects/demo', { token: admin })).status, 204);
  // Gone: a reader of every cache learns so; anyone else gets what an unreadable project answers.
  const gone = await call('GET', '/projects/demo', { token: admin });
  assert.equal(gone.status, 404);
  assert.equal(gone.body.code, 'NOT_FOUND');
  const goneAnon = await call('GET', '/projects/demo');
  assert.equal(goneAnon.status, 401);
  assert.match(goneAnon.body.message, /project demo does not exist or needs a token with read rights/);
});

test('an evaluation that cannot even lock its flake fails with the reason; builds, spokes and queues', async (t) => {
  const { call, token, redis } = await setup(t);
  const admin = token('main', 'admin');
  const dir = mkdtempSync(join(tmpdir(), 'narhub-no-flake-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal(
    (await call('POST', '/projects', { body: { name: 'broken', flake: `path:${dir}`, cache: 'main' }, token: admin }))
      .status,
    201,
  );
  assert.equal((await call('POST', '/projects/broken/evaluations', { body: {} })).status, 401);
  const started = await call('POST', '/projects/broken/evaluations', { body: { priority: 10 }, token: admin });
  assert.equal(started.status, 202);
  assert.equal(started.body.priority, 10);
  const ended = await waitFor(
    'the evaluation to fail',
    async () => {
      const e = await call('GET', `/evaluations/${started.body.id}`);
      return e.body.status === 'failed' ? e.body : undefined;
    },
    60_000,
  );
  assert.match(ended.error, /cannot lock/);
  assert.deepEqual(ended.jobs, []);
  assert.equal((await call('GET', '/projects/broken/evaluations')).body.evaluations[0].id, started.body.id);
  const everyCache = token('*', 'read');
  assert.equal((await call('GET', '/evaluations/999', { token: everyCache })).status, 404);
  assert.equal((await call('GET', '/evaluations/999')).status, 401, 'to others, as an unreadable one');

  const missing = await call('GET', '/builds/0123456789abcdfghijklmnpqrsvwxyz', { token: everyCache });
  assert.equal(missing.status, 404);
  assert.equal(missing.body.code, 'NOT_FOUND');
  assert.equal((await call('GET', '/builds/not-a-derivation-path-at-all-no-no')).body.code, 'STORE_PATH_INVALID');
  assert.deepEqual((await call('GET', '/builds?status=queued')).body, { builds: [] });
  assert.equal((await call('GET', '/builds?status=bogus')).status, 400);

  assert.equal((await call('GET', '/spokes')).status, 401);
  const reader = token('main', 'read');
  assert.deepEqual((await call('GET', '/spokes', { token: reader })).body, { spokes: [] });
  const r = new Redis(redis.url);
  const hb: SpokeHeartbeat = {
    protocol: 1,
    id: 'sp1',
    hostname: 'h',
    systems: ['x86_64-linux'],
    features: ['kvm'],
    maxJobs: 2,
    load: 0.1,
    running: [],
    startedAt: 1,
    seenAt: 2,
  };
  await r.set(spokeKey('sp1'), JSON.stringify(hb), 'EX', 20);
  await r.quit();
  await waitFor(
    'the heartbeat to show',
    async () => {
      const { spokes } = (await call('GET', '/spokes', { token: reader })).body as {
        spokes: { id: string; compatible: boolean }[];
      };
      return spokes.length === 1 && spokes[0]!.id === 'sp1' && spokes[0]!.compatible;
    },
    10_000,
  );
  assert.deepEqual((await call('GET', '/queues', { token: reader })).body, { queues: [] });
});

test("a running build's log: Server-Sent Events as the spoke writes, then the end; plain text at once", async (t) => {
  const { redis, app, db, service, token } = await setup(t);
  const drvHash = '1'.repeat(32);
  createBuildsRepo(db).insert({
    drvHash,
    drvPath: `${drvHash}-live.drv`,
    system: 'x86_64-linux',
    requiredFeatures: [],
    outputs: {},
    queue: 'build-x86_64-linux',
    cacheId: service.registry.require('main').id,
    priority: 0,
  });
  const writer = new Redis(redis.url);
  t.after(() => writer.quit());
  await writer.xadd(logStreamKey(drvHash), '*', 'data', 'first line\n');
  const url = await app.listen({ host: '127.0.0.1', port: 0 });

  const res = await fetch(`${url}/api/v1/builds/${drvHash}/log`, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${token('main', 'read')}` },
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = res.body!.getReader();
  let received = '';
  const until = async (what: RegExp) => {
    const deadline = Date.now() + 10_000;
    while (!what.test(received)) {
      if (Date.now() > deadline) assert.fail(`no ${what} in ${JSON.stringify(received)}`);
      const { value, done } = await reader.read();
      if (done) break;
      received += Buffer.from(value).toString('utf8');
    }
    assert.match(received, what);
  };
  await until(/event: log\ndata: first line\n/);
  // Written after the client connected: it arrives while the build runs.
  await writer.xadd(logStreamKey(drvHash), '*', 'data', 'second line\n');
  await until(/event: log\ndata: second line\n/);
  assert.doesNotMatch(received, /event: end/, 'the stream stays open while the build runs');

  // Plain GET meanwhile: what there is so far, marked partial.
  const partial = await fetch(`${url}/api/v1/builds/${drvHash}/log`, {
    headers: { authorization: `Bearer ${token('main', 'read')}` },
  });
  assert.equal(partial.headers.get('x-narhub-log'), 'partial');
  assert.equal(await partial.text(), 'first line\nsecond line\n');

  // The spoke's end-of-file entry ends the stream with the build's status.
  await writer.xadd(logStreamKey(drvHash), '*', 'eof', '1');
  await until(/event: end\ndata: queued\n\n$/);
  assert.equal((await reader.read()).done, true);

  const other = await fetch(`${url}/api/v1/builds/${'2'.repeat(32)}/log`, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${token('*', 'read')}` },
  });
  assert.equal(other.status, 404);
});

test('shared records are cut to what a token may read; an unreadable build answers as a missing one', async (t) => {
  const { call, token, redis, db, service } = await setup(t);
  const admin = token('*', 'admin');
  const mainReader = token('main', 'read');
  const secretReader = token('secret', 'read');
  const builds = createBuildsRepo(db);
  const insert = (drvHash: string, cache: string) =>
    builds.insert({
      drvHash,
      drvPath: `${drvHash}-shared.drv`,
      system: 'x86_64-linux',
      requiredFeatures: [],
      outputs: {},
      queue: 'build-x86_64-linux',
      cacheId: service.registry.require(cache).id,
      priority: 0,
    });
  const shared = '2'.repeat(32); // in the public cache, asked for by both projects
  const hidden = '3'.repeat(32); // in the private cache
  const absent = '4'.repeat(32);
  insert(shared, 'main');
  insert(hidden, 'secret');

  // A project in each cache, each with an evaluation (of a flake that cannot be locked) that asked for the builds.
  const dir = mkdtempSync(join(tmpdir(), 'narhub-no-flake-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const asked = db.prepare('INSERT INTO eval_builds (eval_id, drv_hash) VALUES (?, ?)');
  for (const [name, cache, hashes] of [
    ['open', 'main', [shared]],
    ['closed', 'secret', [shared, hidden]],
  ] as const) {
    const body = { name, flake: `path:${dir}`, cache };
    assert.equal((await call('POST', '/projects', { body, token: admin })).status, 201);
    const e = await call('POST', `/projects/${name}/evaluations`, { body: {}, token: admin });
    assert.equal(e.status, 202);
    for (const h of hashes) asked.run(e.body.id, h);
  }

  const requesters = async (tok?: string) =>
    ((await call('GET', `/builds/${shared}`, tok ? { token: tok } : {})).body.requestedBy as { project: string }[])
      .map((r) => r.project)
      .sort();
  assert.deepEqual(await requesters(), ['open'], 'anonymous: the public project only');
  assert.deepEqual(await requesters(mainReader), ['open']);
  assert.deepEqual(await requesters(secretReader), ['closed', 'open']);

  // A build of a cache the token may not read answers exactly as one that does not exist.
  const unreadable = await call('GET', `/builds/${hidden}`, { token: mainReader });
  const missing = await call('GET', `/builds/${absent}`, { token: mainReader });
  assert.deepEqual([unreadable.status, missing.status], [401, 401]);
  assert.equal(unreadable.body.message, `build ${hidden} does not exist or needs a token with read rights`);
  assert.equal(missing.body.message, `build ${absent} does not exist or needs a token with read rights`);
  assert.equal((await call('GET', `/builds/${hidden}`, { token: secretReader })).status, 200);
  assert.equal(
    (await call('GET', `/builds/${absent}`, { token: admin })).status,
    404,
    'a reader of every cache learns it is missing',
  );

  // A spoke running both builds: each token sees the ids of those it may read, and a count of the others.
  const r = new Redis(redis.url);
  const hb: SpokeHeartbeat = {
    protocol: 1,
    id: 'sp1',
    hostname: 'h',
    systems: ['x86_64-linux'],
    features: [],
    maxJobs: 2,
    load: 0.1,
    running: [shared, hidden],
    startedAt: 1,
    seenAt: 2,
  };
  await r.set(spokeKey('sp1'), JSON.stringify(hb), 'EX', 20);
  await r.quit();
  const spoke = async (tok: string) => {
    const { spokes } = (await call('GET', '/spokes', { token: tok })).body as {
      spokes: { id: string; running: string[]; hiddenRunning: number }[];
    };
    return spokes.map((s) => [s.id, s.running, s.hiddenRunning]);
  };
  assert.deepEqual(await spoke(mainReader), [['sp1', [shared], 1]]);
  assert.deepEqual(await spoke(secretReader), [['sp1', [shared, hidden], 0]]);
  assert.deepEqual(await spoke(admin), [['sp1', [shared, hidden], 0]]);
});
