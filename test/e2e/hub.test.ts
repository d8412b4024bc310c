// The build hub end to end: real redis-server, real Nix 2.8, real `narhub serve` and two real
// `narhub spoke` processes, each building in a chroot store of its own.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import type { BuildJobData } from '../../src/protocol/build-jobs.js';
import { freePort, hubApi, startSpoke, waitFor, type RunningSpoke } from '../helpers/hub.js';
import { promtool, seriesValue } from '../helpers/prometheus.js';
import { getNarinfo, verifyNarinfoSig } from '../helpers/http.js';
import { createNixEnv, type NixEnv } from '../helpers/nix.js';
import { startRedis } from '../helpers/redis.js';
import { runCli, runCliOk, startServer, type RunningServer } from '../helpers/server.js';
import { makeTempDir } from '../helpers/tmp.js';
import { parseDerivation } from '../../src/nix/derivation.js';
import { textStorePath } from '../../src/nix/text-path.js';

const FIXTURE = resolve(dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/flake-hub/flake.nix');
const SYSTEM = 'x86_64-linux';

interface JobView {
  attr: string;
  drvPath: string | null;
  drvHash: string | null;
  status: string;
  outputs: Record<string, string>;
  error: string | null;
  waitingFor: string | null;
}
interface EvalView {
  id: number;
  status: string;
  supersededBy: number | null;
  builds: Record<string, number>;
  jobs: JobView[];
}
interface BuildView {
  drvHash: string;
  drvPath: string;
  status: string;
  outputs: Record<string, string>;
  spoke: string | null;
  attempt: number;
  failureKind: string | null;
  error: string | null;
  failedDependency: string | null;
  waitingFor: string | null;
  finishedAt: string | null;
}

const short = (attr: string) => attr.replace(`checks.${SYSTEM}.`, '');

/** Which stores built `path` themselves (`ultimate`), as opposed to substituting it. */
async function builtIn(nix: NixEnv, spokes: RunningSpoke[], path: string): Promise<string[]> {
  const found: string[] = [];
  for (const s of spokes) {
    const res = await nix.tryRun('nix', ['path-info', '--json', '--store', s.store, path]);
    const info = (res.stdout.trim().startsWith('[') ? JSON.parse(res.stdout) : []) as {
      path: string;
      valid?: boolean;
      ultimate?: boolean;
    }[];
    if (info.some((i) => i.path === path && i.valid !== false && i.ultimate === true)) found.push(s.id);
  }
  return found;
}

test('the hub builds a flake on two spokes: once each, into the cache, surviving a dead spoke and its own restart', {
  timeout: 900_000,
}, async (t) => {
  const redis = await startRedis(t);
  const hubNix = await createNixEnv(t);
  const listen = `127.0.0.1:${await freePort()}`;
  const serverArgs = ['--listen', listen, '--redis-url', redis.url];
  let server: RunningServer = await startServer(t, { args: serverArgs, env: hubNix.env });
  const url = server.url;
  const token = server.adminToken;
  const api = hubApi(() => url, token);
  const cli = (args: string[]) => runCliOk([...args, '--server', url, '--token', token], { timeoutMs: 120_000 });

  const flakeDir = await makeTempDir(t, 'narhub-flake-');
  await copyFile(FIXTURE, join(flakeDir, 'flake.nix'));
  let nonce = randomBytes(6).toString('hex');
  await writeFile(join(flakeDir, 'nonce'), `${nonce}\n`);

  const spokeEnvs: NixEnv[] = [];
  const newSpoke = async (id: string) => {
    const nix = await createNixEnv(t);
    spokeEnvs.push(nix);
    // The server is restarted below while spokes push. A restart under a loaded machine (a
    // node start took 7.7 s at a load average of 26) outlasts the default network retries
    // (2, from 2 s: 3-6 s in all), after which a job fails as `infrastructure` and is built again
    // elsewhere; five retries wait long enough, so "built exactly once" holds.
    return startSpoke(t, {
      id,
      hubUrl: url,
      redisUrl: redis.url,
      token,
      store: nix.freshPath('store'),
      env: nix.env,
      extraArgs: ['--network-retries', '5'],
    });
  };
  const spokeA = await newSpoke('spoke-a');
  const spokeB = await newSpoke('spoke-b');
  const allSpokes = [spokeA, spokeB];

  await cli(['project', 'create', 'hub-test', '--flake', `path:${flakeDir}`, '--systems', SYSTEM, '--cache', 'main']);
  const listed = await cli(['project', 'list', '--json']);
  assert.deepEqual(
    (JSON.parse(listed.stdout) as { name: string }[]).map((p) => p.name),
    ['hub-test'],
  );

  // --- First evaluation ------------------------------------------------------------------
  const first = JSON.parse((await cli(['eval', 'hub-test', '--json'])).stdout) as EvalView;
  const evaluated = (id: number) =>
    waitFor(
      `evaluation ${id} to be evaluated`,
      async () => {
        const e = (await api.get(`/evaluations/${id}`)) as EvalView;
        return e.status !== 'pending' && e.status !== 'evaluating' ? e : undefined;
      },
      120_000,
    );
  let ev = await evaluated(first.id);
  assert.equal(ev.status, 'building', JSON.stringify(ev));
  const job = (e: EvalView, name: string) => e.jobs.find((j) => short(j.attr) === name)!;
  assert.deepEqual(ev.jobs.map((j) => short(j.attr)).sort(), [
    'after-fail',
    'chain',
    'eval-error',
    'fails',
    'needs-feature',
    'shared-a',
    'shared-b',
    'slow',
  ]);
  assert.equal(job(ev, 'eval-error').status, 'eval-failed');
  assert.match(job(ev, 'eval-error').error ?? '', /this check does not evaluate/);
  assert.equal(
    Object.values(ev.builds).reduce((a, b) => a + b, 0),
    10,
    `ten derivations to build, the shared one once: ${JSON.stringify(ev.builds)}`,
  );

  // A spoke dies (SIGKILL) in the middle of the slowest build; the other one completes it.
  const slowHash = job(ev, 'slow').drvHash!;
  const runningSlow = (await waitFor(
    'the slow build to run',
    async () => {
      const b = (await api.get(`/builds/${slowHash}`)) as BuildView;
      return b.status === 'running' && b.spoke ? b : undefined;
    },
    180_000,
    100,
  )) as BuildView;
  const doneBefore = ((await api.get('/builds?status=succeeded&limit=1000')) as { builds: BuildView[] }).builds;
  assert.deepEqual(
    [...new Set(doneBefore.map((b) => b.spoke))].sort(),
    ['spoke-a', 'spoke-b'],
    'work is spread across both spokes',
  );
  const victim = allSpokes.find((s) => s.id === runningSlow.spoke)!;
  const survivor = allSpokes.find((s) => s !== victim)!;
  await sleep(1_500);
  await victim.kill();

  const onlyGatedOpen = (id: number) =>
    waitFor(
      `evaluation ${id}: every build but the feature-gated one ended`,
      async () => {
        const e = (await api.get(`/evaluations/${id}`)) as EvalView;
        const open = e.jobs.filter((j) => j.status === 'queued' || j.status === 'running');
        return e.status === 'building' &&
          open.length === 1 &&
          short(open[0]!.attr) === 'needs-feature' &&
          (e.builds.running ?? 0) === 0 &&
          e.builds.queued === 1
          ? e
          : undefined;
      },
      240_000,
      500,
    );
  ev = await onlyGatedOpen(first.id);

  const slow = (await api.get(`/builds/${slowHash}`)) as BuildView;
  assert.equal(slow.status, 'succeeded');
  assert.equal(slow.spoke, survivor.id, 'the surviving spoke finished the killed build');
  assert.equal(slow.attempt, 1, 'a dead spoke is no build failure');

  for (const name of ['shared-a', 'shared-b', 'chain', 'slow']) assert.equal(job(ev, name).status, 'succeeded', name);
  assert.equal(job(ev, 'fails').status, 'failed');
  assert.match(job(ev, 'fails').error ?? '', /exit code 1/);
  const fails = (await api.get(`/builds/${job(ev, 'fails').drvHash}`)) as BuildView;
  assert.equal(fails.failureKind, 'build');
  const afterFail = (await api.get(`/builds/${job(ev, 'after-fail').drvHash}`)) as BuildView;
  assert.equal(afterFail.status, 'dependency-failed');
  assert.equal(afterFail.failedDependency, fails.drvPath);
  assert.equal(afterFail.spoke, null, 'a dependency failure is never built');
  const gated = job(ev, 'needs-feature');
  assert.equal(gated.status, 'queued');
  assert.match(
    gated.waitingFor ?? '',
    /no connected spoke can build x86_64-linux with features narhub-test-unobtainium/,
  );
  const { queues } = (await api.get('/queues')) as { queues: { name: string; waiting: number; spokes: string[] }[] };
  const gatedQueue = queues.find((q) => q.name === `build-${SYSTEM}+narhub-test-unobtainium`);
  assert.ok(gatedQueue, JSON.stringify(queues));
  assert.equal(gatedQueue.waiting, 1);
  assert.deepEqual(gatedQueue.spokes, []);
  const { spokes } = (await api.get('/spokes')) as { spokes: { id: string }[] };
  assert.ok(spokes.some((s) => s.id === survivor.id));

  // The same on /metrics (loopback: no token), which promtool accepts.
  const metrics = await (await fetch(`${url}/metrics`)).text();
  promtool(metrics);
  assert.equal(
    seriesValue(metrics, `narhub_hub_queue_jobs{queue="build-${SYSTEM}+narhub-test-unobtainium",state="waiting"}`),
    1,
    metrics,
  );
  assert.equal(seriesValue(metrics, 'narhub_hub_spokes_online'), spokes.length);
  const byStatus: Record<string, number> = {};
  for (const b of ((await api.get('/builds?limit=1000')) as { builds: BuildView[] }).builds)
    byStatus[b.status] = (byStatus[b.status] ?? 0) + 1;
  assert.ok(byStatus.succeeded! >= 7 && byStatus.failed! >= 1, JSON.stringify(byStatus));
  for (const [status, n] of Object.entries(byStatus))
    assert.equal(seriesValue(metrics, `narhub_hub_builds{status="${status}"}`), n, `${status}: ${metrics}`);

  // Every derivation built exactly once, all outputs in the cache, signed, and substitutable.
  const succeeded = ((await api.get('/builds?status=succeeded&limit=1000')) as { builds: BuildView[] }).builds;
  assert.equal(succeeded.length, 7, succeeded.map((b) => b.drvPath).join('\n'));
  const outputs = succeeded.flatMap((b) => Object.values(b.outputs));
  // The hub told the spoke the outputs of the chain's input, so it had no .drv to read for them.
  const queue = new Queue<BuildJobData>(`build-${SYSTEM}`, {
    connection: { url: redis.url, maxRetriesPerRequest: null },
  });
  const chainJob = await queue.getJob(`build-${job(ev, 'chain').drvHash}`);
  await queue.close();
  const base = (p: string) => p.replace(/^\/nix\/store\//, '');
  const [chainInput, ...moreInputs] = Object.entries(chainJob?.data.inputOutputs ?? {});
  assert.ok(
    chainInput && moreInputs.length === 0,
    `the chain's job names its one input: ${JSON.stringify(chainJob?.data)}`,
  );
  // And it sent the .drv's text along, the very text of the path.
  const chainText = chainJob?.data.drvText;
  assert.equal(typeof chainText, 'string', "the chain's job carries its .drv");
  const chainDrv = parseDerivation(chainText!);
  assert.equal(
    textStorePath(chainJob!.data.drvPath.replace(/^.*?-/, ''), chainText!, [
      ...Object.keys(chainDrv.inputDrvs),
      ...chainDrv.inputSrcs,
    ]),
    chainJob!.data.drvPath,
  );
  const chainInputBuild = succeeded.find((b) => base(b.drvPath) === base(chainInput[0]));
  assert.ok(chainInputBuild, `${chainInput[0]} is a build of this evaluation`);
  assert.deepEqual(
    Object.fromEntries(Object.entries(chainInput[1]).map(([k, v]) => [k, base(v)])),
    Object.fromEntries(Object.entries(chainInputBuild.outputs).map(([k, v]) => [k, base(v)])),
  );
  const slowOut = slow.outputs.out!;
  assert.ok((await builtIn(hubNix, [survivor], slowOut)).length === 1, 'the survivor built the slow check itself');
  for (const out of outputs) {
    // The killed spoke's own nix process may finish in its store after the spoke died; it never reached the cache.
    const stores = out === slowOut ? allSpokes.filter((s) => s !== victim) : allSpokes;
    assert.equal((await builtIn(hubNix, stores, out)).length, 1, `${out} was built by exactly one spoke`);
    const got = await getNarinfo(`${url}/main`, out);
    assert.equal(got.status, 200, `${out} is in the cache: ${got.body}`);
    assert.ok(verifyNarinfoSig(got.narinfo!, server.publicKey), `${out} is signed by the cache`);
  }
  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  await client.run('nix', ['copy', '--from', `${url}/main`, '--to', client.freshPath('client-store'), ...outputs]);

  // Logs: from the cache once the build ended.
  const sharedA = job(ev, 'shared-a').drvHash!;
  const log = await fetch(`${url}/api/v1/builds/${sharedA}/log`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(log.status, 200);
  assert.match(await log.text(), new RegExp(`narhub-hub-log hub-shared-a ${nonce}`));
  const shown = await cli(['build', 'show', `/nix/store/${job(ev, 'fails').drvPath!.slice('/nix/store/'.length)}`]);
  assert.match(shown.stdout, /status:\s+failed \(build\)/);

  // --- Re-evaluation builds nothing -----------------------------------------------------
  const snapshot = async () =>
    new Map(
      ((await api.get('/builds?limit=1000')) as { builds: BuildView[] }).builds.map((b) => [
        b.drvHash,
        `${b.status}/${b.attempt}/${b.finishedAt}`,
      ]),
    );
  const before = await snapshot();
  const second = JSON.parse((await cli(['eval', 'hub-test', '--json'])).stdout) as EvalView;
  const ev2 = await evaluated(second.id);
  for (const name of ['shared-a', 'shared-b', 'chain', 'slow']) assert.equal(job(ev2, name).status, 'cached', name);
  assert.equal(job(ev2, 'fails').status, 'failed', 'a build failure is not retried by a re-evaluation');
  assert.equal(job(ev2, 'after-fail').status, 'dependency-failed');
  assert.equal(job(ev2, 'needs-feature').status, 'queued');
  await sleep(2_000);
  assert.deepEqual(await snapshot(), before, 're-evaluating started no build');
  const ev1 = (await api.get(`/evaluations/${first.id}`)) as EvalView;
  assert.equal(ev1.supersededBy, second.id);
  assert.equal(job(ev1, 'needs-feature').status, 'queued', 'a build the newer evaluation needs is not cancelled');

  // eval --wait: a project whose only job is already in the cache ends at once, exit 0.
  await cli(['project', 'create', 'hub-packages', '--flake', `path:${flakeDir}`, '--attrs', 'packages']);
  const waited = await cli(['eval', 'hub-packages', '--wait', '--json']);
  const packages = JSON.parse(waited.stdout) as EvalView;
  assert.equal(packages.status, 'succeeded');
  assert.deepEqual(
    packages.jobs.map((j) => [j.attr, j.status]),
    [[`packages.${SYSTEM}.default`, 'cached']],
  );
  // …and one with a failure exits 1.
  const failing = await runCli(['eval', 'hub-test', '--wait', '--timeout', '20', '--server', url, '--token', token], {
    timeoutMs: 60_000,
  });
  assert.equal(failing.code, 1, failing.stderr);

  // Cancel and restart a build; writes need the admin token, a public cache's builds are readable by anyone.
  const gatedHash = job(ev2, 'needs-feature').drvHash!;
  assert.equal((await fetch(`${url}/api/v1/builds/${gatedHash}/cancel`, { method: 'POST' })).status, 401);
  assert.equal((await fetch(`${url}/api/v1/builds/${gatedHash}`)).status, 200);
  const cancelled = JSON.parse((await cli(['build', 'cancel', gatedHash, '--json'])).stdout) as BuildView;
  assert.equal(cancelled.status, 'cancelled');
  const ended2 = await waitFor('the evaluation to end once its last build was cancelled', async () => {
    const e = (await api.get(`/evaluations/${second.id}`)) as EvalView;
    return e.status !== 'building' ? e : undefined;
  });
  assert.equal(ended2.status, 'failed', 'a failure outweighs a cancellation');
  const gatedWaiting = async () =>
    ((await api.get('/queues')) as { queues: { name: string; waiting: number }[] }).queues.find(
      (q) => q.name === gatedQueue.name,
    )?.waiting;
  assert.equal(await gatedWaiting(), 0, 'the cancelled job left its queue');
  const restarted = JSON.parse((await cli(['build', 'restart', gatedHash, '--json'])).stdout) as BuildView;
  assert.equal(restarted.status, 'queued');
  assert.equal(restarted.attempt, 2);
  await waitFor('the restarted job to be queued again', async () => (await gatedWaiting()) === 1);
  assert.equal(
    ((await api.get(`/evaluations/${second.id}`)) as EvalView).status,
    'building',
    'restarting reopens the evaluation',
  );

  // --- The hub restarted mid-evaluation -------------------------------------------------
  const spokeC = await newSpoke('spoke-c');
  allSpokes.push(spokeC);
  nonce = randomBytes(6).toString('hex');
  await writeFile(join(flakeDir, 'nonce'), `${nonce}\n`);
  const third = (await api.post('/projects/hub-test/evaluations', {})) as EvalView;
  await server.stop(); // while the evaluation runs (or has not even started)
  server = await startServer(t, { dataDir: server.dataDir, args: serverArgs, env: hubNix.env });
  await evaluated(third.id);
  // Once more while builds run and others still wait for their inputs.
  await waitFor(
    'a build to run while another waits for its inputs',
    async () => {
      const { builds } = (await api.get('/builds?limit=1000')) as { builds: BuildView[] };
      const fresh = builds.filter((b) => !before.has(b.drvHash));
      return (
        fresh.some((b) => b.status === 'running') &&
        fresh.some((b) => b.status === 'queued' && /^waiting for \d+ input/.test(b.waitingFor ?? ''))
      );
    },
    120_000,
    100,
  );
  await server.stop();
  server = await startServer(t, { dataDir: server.dataDir, args: serverArgs, env: hubNix.env });
  const ev3 = await onlyGatedOpen(third.id);
  // The newer evaluation superseded the older ones: the old gated build only they needed is cancelled.
  assert.equal(((await api.get(`/builds/${gatedHash}`)) as BuildView).status, 'cancelled');
  const history = ((await api.get('/projects/hub-test/evaluations')) as { evaluations: EvalView[] }).evaluations;
  assert.deepEqual(
    history.filter((e) => e.supersededBy === null).map((e) => e.id),
    [third.id],
    'only the newest evaluation is current',
  );
  for (const name of ['shared-a', 'shared-b', 'chain', 'slow']) assert.equal(job(ev3, name).status, 'succeeded', name);
  assert.equal(job(ev3, 'fails').status, 'failed');
  assert.equal(job(ev3, 'after-fail').status, 'dependency-failed');
  const fresh = ((await api.get('/builds?limit=1000')) as { builds: BuildView[] }).builds.filter(
    (b) => !before.has(b.drvHash),
  );
  assert.equal(fresh.length, 10, 'no build lost, none added twice');
  for (const b of fresh) {
    assert.equal(b.attempt, 1, `${b.drvPath} was not retried`);
    if (b.status !== 'succeeded') continue;
    for (const out of Object.values(b.outputs)) {
      assert.equal(
        (
          await builtIn(
            hubNix,
            allSpokes.filter((s) => s !== victim),
            out,
          )
        ).length,
        1,
        `${out} was built exactly once`,
      );
      assert.equal((await getNarinfo(`${url}/main`, out)).status, 200, `${out} is in the cache`);
    }
  }
  assert.equal(fresh.filter((b) => b.status === 'succeeded').length, 7);

  // A clean drain: the server stops on SIGTERM with exit code 0, hub included.
  assert.equal(await server.stop(), 0, server.stdout() + server.stderr());
  void spokeEnvs;
});
