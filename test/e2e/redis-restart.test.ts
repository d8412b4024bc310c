// Fault injection for the build hub, with real processes: a real `narhub serve` with the hub, a
// real redis-server, a real `narhub spoke` and a real flake evaluation whose checks build for a
// few seconds each. While some builds are done, `long` runs and `chain` waits for it, Redis is
// stopped and started again on its port, empty. The deployment's Redis (nixos/module.nix,
// `services.redis.servers.narhub`) runs with persistence: the append-only file (fsync every
// second) and RDB snapshots, so it comes back with its data, or at worst a second behind. An
// empty comeback is the harsher case: what a Redis without persistence does (an external one, or
// one whose files were lost), and what test/integration/hub/redis-outage.test.ts assumes too.
// The evaluation must finish by itself, nothing may be built twice (the lost job of `long` comes
// back to the spoke still building it), and every visible narinfo must verify against its NAR
// and references.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BuildView, EvaluationView, JobView } from '../../src/hub/views.js';
import { checkVisible } from '../helpers/cache-check.js';
import { checksFlake } from '../helpers/forge-hub.js';
import { hubApi, waitFor } from '../helpers/hub.js';
import { createNixEnv } from '../helpers/nix.js';
import { startRedis } from '../helpers/redis.js';
import { runCliOk, startServer } from '../helpers/server.js';
import { startSpokeProcess } from '../helpers/spoke.js';
import { makeTempDir } from '../helpers/tmp.js';

const SYSTEM = 'x86_64-linux';
const CHECKS = ['a', 'b', 'c', 'long', 'chain'];
/** An evaluation as GET /evaluations/:id shows it: with its jobs. */
type EvalView = EvaluationView & { jobs: JobView[] };

test('Redis restarted empty mid-evaluation: it succeeds by itself, nothing stored is built again, all verifies', {
  timeout: 240_000,
}, async (t) => {
  const started = Date.now();
  let redis = await startRedis(t);
  const hubNix = await createNixEnv(t);
  const server = await startServer(t, { args: ['--redis-url', redis.url], env: hubNix.env });
  const { url, adminToken: token, publicKey } = server;
  const api = hubApi(() => url, token);
  const health = async () => (await (await fetch(`${url}/healthz`)).json()) as { status: string; checks: object };

  const dir = await makeTempDir(t, 'narhub-redis-restart-');
  const nonce = randomBytes(6).toString('hex');
  const build = (name: string, seconds: number) => `mk "${name}" "sleep ${seconds}; echo ${name} > $out" {}`;
  const flakeDir = join(dir, 'flake');
  await mkdir(flakeDir);
  await writeFile(
    join(flakeDir, 'flake.nix'),
    checksFlake({
      nonce,
      tag: 'redis-restart',
      // `chain` waits for `long`'s output, and refers to it, so the cache check follows a reference.
      bindings: `long = ${build('long', 8)};`,
      checks: `{
        a = ${build('a', 2)};
        b = ${build('b', 2)};
        c = ${build('c', 2)};
        inherit long;
        chain = mk "chain" "sleep 2; echo $input > $out" { input = long; };
      }`,
    }),
  );

  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  const spokeNix = await createNixEnv(t);
  const spoke = await startSpokeProcess(t, {
    id: 'spoke-r',
    hub: url,
    redisUrl: redis.url,
    tokenFile,
    systems: [SYSTEM],
    store: spokeNix.freshPath('store'),
    // A slot stays free while `long` builds, so the job the hub adds again for it (Redis lost the
    // first) reaches this spoke while it still builds `long`.
    maxJobs: 3,
    env: spokeNix.env,
  });
  const cli = (args: string[]) => runCliOk([...args, '--server', url, '--token', token], { timeoutMs: 60_000 });
  await cli([
    'project',
    'create',
    'redis-restart',
    '--flake',
    `path:${flakeDir}`,
    '--systems',
    SYSTEM,
    '--cache',
    'main',
  ]);
  assert.equal((await health()).status, 'ok');

  const evaluation = JSON.parse((await cli(['eval', 'redis-restart', '--json'])).stdout) as EvalView;
  const builds = async () => ((await api.get('/builds?limit=1000')) as { builds: BuildView[] }).builds;
  const name = (b: BuildView) => b.drvPath.replace(/^.*?-/, '').replace(/\.drv$/, '');
  // Builds in flight: some done (stored), `long` running, `chain` waiting for it.
  const before = await waitFor(
    'a build done while long runs and chain waits',
    async () => {
      const all = await builds();
      const status = (n: string) => all.find((b) => name(b) === n)?.status;
      return all.length === CHECKS.length &&
        all.some((b) => b.status === 'succeeded') &&
        status('long') === 'running' &&
        status('chain') === 'queued'
        ? all
        : undefined;
    },
    120_000,
    100,
  );
  const storedBefore = before.filter((b) => b.status === 'succeeded');

  await redis.stop();
  const down = await waitFor('/healthz to say degraded', async () => {
    const h = await health();
    return h.status === 'degraded' ? h : undefined;
  });
  assert.notEqual((down.checks as Record<string, string>).redis, 'ok');
  // The cache serves what it has while Redis is away, and all of it verifies.
  const hashParts = (bs: BuildView[]) =>
    bs.flatMap((b) =>
      [...Object.values(b.outputs), b.drvPath].map((p) => p.replace(/^\/nix\/store\//, '').slice(0, 32)),
    );
  const visibleDuring = await checkVisible(`${url}/main`, publicKey, hashParts(before));
  for (const b of storedBefore)
    for (const out of Object.values(b.outputs))
      assert.ok(visibleDuring.has(out.replace(/^\/nix\/store\//, '').slice(0, 32)), `${out} is served meanwhile`);

  redis = await startRedis(t, { port: redis.port });
  await waitFor('/healthz to be ok again', async () => (await health()).status === 'ok', 60_000, 100);

  const ended = await waitFor(
    'the evaluation to end',
    async () => {
      const e = (await api.get(`/evaluations/${evaluation.id}`)) as EvalView;
      return ['succeeded', 'failed', 'cancelled'].includes(e.status) ? e : undefined;
    },
    120_000,
    200,
  );
  const after = await builds();
  const describe = () =>
    [
      JSON.stringify(ended),
      JSON.stringify(after),
      'spoke:',
      spoke.output(),
      'server:',
      server.stdout(),
      server.stderr(),
    ].join('\n');
  assert.equal(ended.status, 'succeeded', describe());
  assert.deepEqual(
    ended.jobs.map((j) => [j.attr.replace(`checks.${SYSTEM}.`, ''), j.status]).sort(),
    CHECKS.map((c) => [c, 'succeeded']).sort(),
    describe(),
  );
  assert.equal(after.length, CHECKS.length, describe());

  // Who built what, from the spoke's log: each job it took ('build started'), less those whose
  // outputs it found in the cache and so did not build, is a build of its own.
  const logLines = () =>
    spoke
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; drv?: string });
  const timesBuilt = (drvPath: string) => {
    const lines = logLines().filter((l) => l.drv === drvPath);
    return (
      lines.filter((l) => l.msg === 'build started').length -
      lines.filter((l) => l.msg === 'the outputs are in the cache already: not building them again').length
    );
  };
  for (const b of storedBefore) {
    assert.equal(timesBuilt(b.drvPath), 1, `${name(b)}, stored before Redis restarted, was built once\n${describe()}`);
    const now = after.find((x) => x.drvHash === b.drvHash)!;
    assert.deepEqual([now.status, now.spoke, now.attempt], ['succeeded', 'spoke-r', 1], `${name(b)}'s record stays`);
  }
  // Nor was anything else built twice. Redis lost the job of `long`, which the spoke was building:
  // the hub added it again, and the spoke, taking it while still building `long` (or after), waited
  // for its own build and took the outputs from the cache.
  const long = after.find((b) => name(b) === 'long')!;
  const starts = (drvPath: string) => logLines().filter((l) => l.drv === drvPath && l.msg === 'build started').length;
  assert.equal(starts(long.drvPath), 2, `the job of long was added again and taken\n${describe()}`);
  for (const b of after) {
    assert.equal(timesBuilt(b.drvPath), 1, `${name(b)} was built once\n${describe()}`);
    assert.equal(b.spoke, 'spoke-r', describe());
  }

  // Every visible narinfo verifies against its NAR and references; every output is visible.
  const visible = await checkVisible(`${url}/main`, publicKey, hashParts(after));
  for (const b of after)
    for (const out of Object.values(b.outputs))
      assert.ok(visible.has(out.replace(/^\/nix\/store\//, '').slice(0, 32)), `${out} is in the cache`);
  t.diagnostic(`builds when Redis stopped: ${before.map((b) => `${name(b)} ${b.status}`).join(', ')}`);
  const waited = logLines().filter(
    (l) => l.msg === 'this spoke is building this derivation already: waiting for that build',
  );
  t.diagnostic(`jobs that waited for the spoke's own build of their derivation: ${waited.length}`);
  t.diagnostic(`wall time ${Date.now() - started} ms`);
});
