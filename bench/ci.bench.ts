// `node dist/bench/ci.bench.js [--reps N] [--attrs N] [--renders N]`: the two measures of the
// CI (issue 17), each beside its reference in one run. Never part of `npm test`.
//
// 1. Webhook → first dispatch: a signed GitHub push webhook for a new commit of a flake whose
//    evaluation is instantaneous (one trivial check), until the hub adds the first build job to
//    BullMQ (seen by a QueueEvents listener); against the same commit started through the API
//    (`POST /projects/NAME/evaluations`), which is what the webhook adds on top of. Alternately,
//    --reps times each (default 10). Target: webhook p50 < 1 s.
// 2. An evaluation page with --attrs attributes (default 1,000) rendered on the server
//    (`GET /ui/evaluations/ID` through app.inject: routing, the hub's view, JSX rendering);
//    against the JSON of the same evaluation (`GET /api/v1/evaluations/ID`), alternately,
//    --renders times each (default 30). Target: p50 < 200 ms.
import { execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { QueueEvents } from 'bullmq';
import { pino } from 'pino';
import { createCacheService } from '../src/cache/cache-service.js';
import { createBuildsRepo } from '../src/db/builds-repo.js';
import { createEvaluationsRepo } from '../src/db/evaluations-repo.js';
import { defaultMigrationsDir, migrate } from '../src/db/migrate.js';
import { openDatabase } from '../src/db/open.js';
import { createProjectsRepo } from '../src/db/projects-repo.js';
import { createForge } from '../src/forge/forge-service.js';
import { buildApp } from '../src/http/app.js';
import { createHub } from '../src/hub/hub-service.js';
import { queueName } from '../src/protocol/build-jobs.js';
import { createLocalBlobStore } from '../src/storage/local-blob-store.js';
import { freePort } from '../test/helpers/hub.js';
import { createNixEnv } from '../test/helpers/nix.js';
import { startRedis } from '../test/helpers/redis.js';
import { runCliOk, startServer } from '../test/helpers/server.js';

const { values } = parseArgs({
  options: { reps: { type: 'string' }, attrs: { type: 'string' }, renders: { type: 'string' } },
});
const REPS = Number(values.reps ?? 10);
const ATTRS = Number(values.attrs ?? 1000);
const RENDERS = Number(values.renders ?? 30);

const cleanups: (() => unknown)[] = [];
const t = { after: (fn: () => unknown) => void cleanups.push(fn) };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))]!;
const ms = (n: number) => `${n.toFixed(1)} ms`;

async function webhookToDispatch(): Promise<Record<string, number[]>> {
  const redis = await startRedis(t);
  const nix = await createNixEnv(t);
  const dir = mkdtempSync(join(tmpdir(), 'narhub-ci-bench-'));
  const secret = randomBytes(16).toString('hex');
  writeFileSync(join(dir, 'secret'), secret);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ github: { webhookSecretFile: join(dir, 'secret') } }));
  const repo = join(dir, 'repo');
  const git = (...args: string[]) =>
    execFileSync('git', ['-C', repo, ...args], {
      encoding: 'utf8',
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 'b',
        GIT_AUTHOR_EMAIL: 'b@e',
        GIT_COMMITTER_NAME: 'b',
        GIT_COMMITTER_EMAIL: 'b@e',
      },
    }).trim();
  execFileSync('git', ['init', '-q', '-b', 'main', repo]);
  const commit = () => {
    const nonce = randomBytes(8).toString('hex');
    writeFileSync(
      join(repo, 'flake.nix'),
      `{ outputs = { self }: { checks.x86_64-linux.one = derivation { name = "ci-bench-${nonce}"; ` +
        `system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }; }; }\n`,
    );
    git('add', 'flake.nix');
    git('commit', '-q', '-m', nonce);
    return git('rev-parse', 'HEAD');
  };
  commit();
  const server = await startServer(t, {
    args: ['--listen', `127.0.0.1:${await freePort()}`, '--redis-url', redis.url, '--config', join(dir, 'config.json')],
    env: nix.env,
  });
  const { url, adminToken: token } = server;
  await runCliOk([
    'project',
    'create',
    'bench',
    '--flake',
    `git+file://${repo}`,
    '--ref',
    'main',
    '--github',
    'o/bench',
    '--server',
    url,
    '--token',
    token,
  ]);

  // The first job of each evaluation shows up as a `waiting` event of the queue.
  const events = new QueueEvents(queueName('x86_64-linux', []), { connection: { url: redis.url } });
  t.after(() => events.close());
  await events.waitUntilReady();
  let resolveNext: ((at: number) => void) | undefined;
  events.on('waiting', () => resolveNext?.(performance.now()));
  const firstDispatch = () => new Promise<number>((r) => (resolveNext = r));

  const viaWebhook = async (sha: string) => {
    const body = JSON.stringify({ ref: 'refs/heads/main', after: sha, repository: { full_name: 'o/bench' } });
    const next = firstDispatch();
    const start = performance.now();
    const res = await fetch(`${url}/api/v1/webhooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
      },
      body,
    });
    if (res.status !== 202) throw new Error(`webhook answered ${res.status}: ${await res.text()}`);
    return (await next) - start;
  };
  const viaApi = async (sha: string) => {
    const next = firstDispatch();
    const start = performance.now();
    const res = await fetch(`${url}/api/v1/projects/bench/evaluations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ref: sha }),
    });
    if (res.status !== 202) throw new Error(`API answered ${res.status}: ${await res.text()}`);
    return (await next) - start;
  };
  const out: Record<string, number[]> = { webhook: [], api: [] };
  await viaWebhook(commit()); // warm-up: Nix's caches, the queue's first use
  for (let i = 0; i < REPS; i++) {
    const order = i % 2 === 0 ? (['webhook', 'api'] as const) : (['api', 'webhook'] as const);
    for (const kind of order) out[kind]!.push(kind === 'webhook' ? await viaWebhook(commit()) : await viaApi(commit()));
  }
  return out;
}

async function evaluationPage(): Promise<Record<string, number[]>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'narhub-ci-page-'));
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dataDir, 'store') });
  const service = createCacheService({ db, store, keysDir: join(dataDir, 'keys') });
  const { cache } = await service.registry.create('main', {
    private: false,
    priority: 40,
    redirectNars: false,
    redirectExpiry: 300,
    recompressToZstd: false,
  });
  const logger = pino({ level: 'silent' });
  const config = {
    enable: true,
    evalTimeout: 600,
    evalMemoryMb: 4096,
    evalWorkers: 1,
    cancelSuperseded: true,
    buildTimeout: 36_000,
    maxSilent: 3600,
    buildAttempts: 3,
  };
  // Not started: the page reads SQLite only (no spokes to ask about without Redis).
  const hub = createHub({ db, cache: service, config, redisUrl: 'redis://127.0.0.1:1', logger });
  const forge = createForge({
    db,
    hub,
    github: undefined,
    publicUrl: () => 'http://bench',
    logger,
    keysDir: join(dataDir, 'keys'),
  });
  const app = await buildApp({
    service,
    hub,
    forge,
    maxNarSize: 1 << 30,
    maxSmallFileSize: 1 << 20,
    publicUrl: () => 'http://bench',
  });
  t.after(() => app.close());

  const project = createProjectsRepo(db).insert('big', {
    flake: 'git+file:///big',
    ref: 'main',
    systems: ['x86_64-linux'],
    attrs: ['checks'],
    cacheId: cache.id,
    priority: 0,
    forgeRepo: null,
    forkPolicy: 'collaborators',
    forkUsers: [],
    pollInterval: null,
    notifyUrl: null,
  });
  const evaluations = createEvaluationsRepo(db);
  const builds = createBuildsRepo(db);
  const e = evaluations.insert({
    projectId: project.id,
    ref: 'main',
    flakeUrl: project.flake,
    priority: 0,
    jobset: 'main',
  });
  const statuses = ['succeeded', 'failed', 'running', 'queued'] as const;
  const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz';
  const hash = (i: number) => [...i.toString(32).padStart(32, '0')].map((d) => NIX32[parseInt(d, 32)]).join('');
  evaluations.start(e.id);
  db.transaction(() => {
    for (let i = 0; i < ATTRS; i++) {
      const h = hash(i);
      const outputs = { out: `${hash(i + ATTRS)}-check-${i}` };
      builds.insert({
        drvHash: h,
        drvPath: `${h}-check-${i}.drv`,
        system: 'x86_64-linux',
        requiredFeatures: [],
        outputs,
        queue: 'x86_64-linux',
        cacheId: cache.id,
        priority: 0,
      });
      const s = statuses[i % 4]!;
      const now = Date.now();
      if (s === 'succeeded')
        builds.succeed(h, 1, { outputs: null, spoke: 's1', startedAt: now - 5000, finishedAt: now, logPath: null });
      if (s === 'failed')
        builds.fail(h, 1, { kind: 'build', error: `builder for check-${i} failed with exit code 1`, spoke: 's2' });
      if (s === 'running') builds.markRunning(h, 1, now, 's1');
      evaluations.linkBuild(e.id, h);
      const attr = `checks.x86_64-linux.check-${i}`;
      evaluations.insertJob({
        evalId: e.id,
        attr,
        system: 'x86_64-linux',
        drvPath: `${h}-check-${i}.drv`,
        drvHash: h,
        outputs,
        error: null,
      });
    }
    evaluations.setEvaluated(e.id);
  })();
  const token = service.tokens.create({ cachePattern: '*', permission: 'admin' }).token;

  const time = async (url: string, headers: Record<string, string> = {}) => {
    const start = performance.now();
    const res = await app.inject({ method: 'GET', url, headers });
    const took = performance.now() - start;
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body.slice(0, 300)}`);
    return { took, bytes: res.rawPayload.length };
  };
  const first = await time(`/ui/evaluations/${e.id}`);
  const json = await time(`/api/v1/evaluations/${e.id}`, { authorization: `Bearer ${token}` });
  console.log(
    `evaluation page: ${ATTRS} attributes, ${(first.bytes / 1024).toFixed(0)} KiB of HTML; ` +
      `JSON ${(json.bytes / 1024).toFixed(0)} KiB`,
  );
  const out: Record<string, number[]> = { html: [], json: [] };
  for (let i = 0; i < RENDERS; i++) {
    const order = i % 2 === 0 ? (['html', 'json'] as const) : (['json', 'html'] as const);
    for (const kind of order)
      out[kind]!.push(
        kind === 'html'
          ? (await time(`/ui/evaluations/${e.id}`)).took
          : (await time(`/api/v1/evaluations/${e.id}`, { authorization: `Bearer ${token}` })).took,
      );
  }
  return out;
}

try {
  const page = await evaluationPage();
  const hook = await webhookToDispatch();
  const rows = [
    [
      'webhook → first dispatch',
      median(hook.webhook!),
      p90(hook.webhook!),
      'API trigger → first dispatch',
      median(hook.api!),
      '< 1000 ms',
    ],
    [
      `UI evaluation page, ${ATTRS} attrs`,
      median(page.html!),
      p90(page.html!),
      'JSON of the same evaluation',
      median(page.json!),
      '< 200 ms',
    ],
  ] as const;
  console.log('| measure | p50 | p90 | reference | reference p50 | ratio | target |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const [what, p50, p9, ref, refP50, target] of rows)
    console.log(
      `| ${what} | ${ms(p50)} | ${ms(p9)} | ${ref} | ${ms(refP50)} | ${(p50 / refP50).toFixed(2)} | ${target} |`,
    );
  console.log(JSON.stringify({ reps: REPS, renders: RENDERS, attrs: ATTRS, webhook: hook, page }));
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
