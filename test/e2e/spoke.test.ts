// `narhub spoke` end to end: real redis-server, real narhub, real Nix; the jobs are enqueued with
// BullMQ the way the hub does, and the spokes build in chroot stores of their own.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ACTIVE_QUEUES_KEY,
  CANCEL_CHANNEL,
  logStreamKey,
  parseFailure,
  queueName,
  spokeKey,
  type BuildJobData,
  type SpokeHeartbeat,
} from '../../src/protocol/build-jobs.js';
import { PROTOCOL_VERSION } from '../../src/protocol/version.js';
import { createNixEnv, hashPart, type NixEnv } from '../helpers/nix.js';
import { startRedis } from '../helpers/redis.js';
import { createToken, runCli, startServer, type RunningServer } from '../helpers/server.js';
import {
  processCommandLines,
  startSpokeProcess,
  testRedis,
  TestQueues,
  waitFor,
  type SpokeProcess,
} from '../helpers/spoke.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { checkVisible } from '../helpers/cache-check.js';
import { tempFiles } from '../helpers/temp-files.js';
import { makeTempDir, type Cleanup } from '../helpers/tmp.js';

// One narhub server and one uploading Nix environment for the whole file; Redis and spokes per test.
const cleanups: (() => unknown)[] = [];
const suite: Cleanup = { after: (fn) => void cleanups.push(fn as () => unknown) };

let server: RunningServer;
let cacheUrl: string;
let uploader: NixEnv;
let spokeNix: NixEnv;
let tokenFile: string;
let system: string;

before(async () => {
  server = await startServer(suite);
  cacheUrl = `${server.url}/main`;
  const { token } = await createToken(server.dataDir, 'main', 'write');
  uploader = await createNixEnv(suite, { netrc: [{ host: '127.0.0.1', password: token }] });
  // What the spokes run with: the machine's settings (here: no sandbox, no build users, no
  // substituters). The spoke adds its own per-job options on top.
  spokeNix = await createNixEnv(suite);
  const dir = await makeTempDir(suite, 'narhub-spoke-token-');
  tokenFile = join(dir, 'token');
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  system = JSON.parse(
    (await uploader.run('nix-instantiate', ['--eval', '--json', '-E', 'builtins.currentSystem'])).stdout,
  ) as string;
});

after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

interface Drv {
  data: BuildJobData;
  out: string;
  /** The input's output path (uploaded to narhub beforehand), if the derivation has one. */
  input?: string;
  /** A line the builder prints first. */
  echo: string;
  nonce: string;
}

/**
 * Writes a /bin/sh derivation with a fresh nonce, instantiates it and uploads the .drv closure to
 * narhub (`nix copy --derivation`); nothing of it is built here. With `input`, it also depends on
 * a small input derivation that IS built here and uploaded, so the spoke must substitute it.
 */
async function makeDrv(
  label: string,
  script: string,
  opts: { input?: boolean; features?: string[]; timeout?: number; cacheName?: string } = {},
): Promise<Drv> {
  const nonce = randomBytes(6).toString('hex');
  const echo = `narhub-spoke-${label}-${nonce}`;
  const file = join(uploader.workDir, `${label}-${nonce}.nix`);
  const features = opts.features ?? [];
  await writeFile(
    file,
    `let
  input = derivation { name = "spoke-input-${nonce}"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo input-${nonce} > $out" ]; };
in {
  inherit input;
  main = derivation ({
    name = "spoke-${label}-${nonce}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "export PATH=/usr/bin:/bin; echo ${echo}; ${script.replace(/"/g, '\\"')}" ];
    ${features.length > 0 ? `requiredSystemFeatures = [ ${features.map((f) => `"${f}"`).join(' ')} ];` : ''}
  } // ${opts.input ? '{ inherit input; }' : '{}'});
}
`,
  );
  let input: string | undefined;
  if (opts.input) {
    input = (await uploader.run('nix-build', ['--no-out-link', file, '-A', 'input'])).stdout.trim();
    await uploader.run('nix', ['copy', '--to', `${cacheUrl}?compression=zstd`, input]);
  }
  const drvPath = (await uploader.run('nix-instantiate', [file, '-A', 'main'])).stdout.trim();
  await uploader.run('nix', ['copy', '--derivation', '--to', `${cacheUrl}?compression=zstd`, drvPath]);
  const shown = JSON.parse((await uploader.run('nix', ['show-derivation', drvPath])).stdout) as Record<
    string,
    { outputs: Record<string, { path: string }> }
  >;
  const out = shown[drvPath]!.outputs.out!.path;
  const data: BuildJobData = {
    protocol: PROTOCOL_VERSION,
    drvHash: hashPart(drvPath),
    drvPath,
    system,
    requiredFeatures: features,
    outputs: { out },
    cacheName: opts.cacheName ?? 'main',
    trustedPublicKeys: [server.publicKey],
    attempt: 1,
    timeout: opts.timeout ?? 0,
    maxSilent: 0,
  };
  return { data, out, echo, nonce, ...(input ? { input } : {}) };
}

/** Overwrites the file of `storePath`'s NAR in the cache with garbage: a spoke that reads it fails its check. */
async function breakNarInCache(storePath: string): Promise<void> {
  const narinfo = await (await fetch(`${cacheUrl}/${hashPart(storePath)}.narinfo`)).text();
  const url = /^URL: (\S+)$/m.exec(narinfo)![1]!;
  await writeFile(join(server.dataDir, 'store', 'main', url), randomBytes(64));
}

/** Waits for the job of `drv` to complete and checks its output is in the cache. */
async function assertBuiltAndPushed(env: Env, drv: Drv): Promise<void> {
  const job = await env.queues.finished(drv.data, 120_000, env.outputs);
  assert.equal(await job.getState(), 'completed', `job failed: ${job.failedReason}\n${env.outputs()}`);
  assert.equal((await fetch(`${cacheUrl}/${hashPart(drv.out)}.narinfo`)).status, 200);
}

interface Env {
  redisUrl: string;
  queues: TestQueues;
  redis: ReturnType<typeof testRedis>;
  spoke(
    id: string,
    opts?: { features?: string[]; maxJobs?: number; args?: string[]; hub?: string },
  ): Promise<SpokeProcess>;
  /** The chroot store of each spoke, by id. */
  stores: Map<string, string>;
  /** All spokes' output, for failure messages. */
  outputs(): string;
}

/** Cleanup that runs last-registered first (spokes stop before their Redis does). */
function stack(t: Cleanup): Cleanup {
  const fns: (() => unknown)[] = [];
  t.after(async () => {
    for (const fn of fns.reverse()) await fn();
  });
  return { after: (fn) => void fns.push(fn as () => unknown) };
}

async function setup(test: Cleanup): Promise<Env> {
  const t = stack(test);
  const redisServer = await startRedis(t);
  const spokes: SpokeProcess[] = [];
  const env: Env = {
    redisUrl: redisServer.url,
    queues: new TestQueues(t, redisServer.url),
    redis: testRedis(t, redisServer.url),
    stores: new Map(),
    async spoke(id, opts = {}) {
      const storeDir = await makeTempDir(t, `narhub-spoke-store-${id}-`);
      env.stores.set(id, join(storeDir, 'store'));
      const s = await startSpokeProcess(t, {
        id,
        hub: server.url,
        redisUrl: redisServer.url,
        tokenFile,
        systems: [system],
        store: join(storeDir, 'store'),
        env: spokeNix.env,
        ...opts,
      });
      spokes.push(s);
      return s;
    },
    outputs: () => spokes.map((s) => `--- spoke ${s.id} ---\n${s.output()}`).join('\n'),
  };
  return env;
}

async function readStream(redis: Env['redis'], drvHash: string): Promise<{ text: string; eof: boolean }> {
  const entries = (await redis.xrange(logStreamKey(drvHash), '-', '+')) as [string, string[]][];
  let text = '';
  let eof = false;
  for (const [, fields] of entries) {
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (fields[i] === 'data') text += fields[i + 1];
      if (fields[i] === 'eof') eof = true;
    }
  }
  return { text, eof };
}

/** Resolves once the build's live log shows the builder's first line. */
function buildRunning(env: Env, drv: Drv): Promise<true> {
  return waitFor(
    `the build of ${drv.data.drvPath} to start`,
    async () => ((await readStream(env.redis, drv.data.drvHash)).text.includes(drv.echo) ? true : undefined),
    60_000,
    env.outputs,
  );
}

async function heartbeatOf(env: Env, id: string): Promise<SpokeHeartbeat | undefined> {
  const text = await env.redis.get(spokeKey(id));
  return text === null ? undefined : (JSON.parse(text) as SpokeHeartbeat);
}

describe('narhub spoke', { concurrency: 1 }, () => {
  test('usage errors exit 2', async () => {
    const missing = await runCli(['spoke', '--hub', server.url, '--systems', 'x86_64-linux']);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /missing --redis-url/);
    const both = await runCli([
      'spoke',
      '--hub',
      server.url,
      '--redis-url',
      'redis://127.0.0.1:1',
      '--systems',
      system,
      '--token',
      'x',
      '--token-file',
      tokenFile,
    ]);
    assert.equal(both.code, 2, both.stderr);
    assert.match(both.stderr, /narhub spoke --hub URL/);
  });

  test('builds a job: input substituted, output pushed and signed, log stored and streamed, heartbeat', async (t) => {
    const env = await setup(t);
    const drv = await makeDrv(
      'ok',
      'sleep 2; mkdir $out; ln -s $input $out/input; echo done > $out/data; echo builder-finished',
      { input: true },
    );
    const spoke = await env.spoke('spoke-ok');

    const beat = await waitFor('the first heartbeat', () => heartbeatOf(env, 'spoke-ok'), 10_000, env.outputs);
    assert.deepEqual(beat.systems, [system]);
    assert.deepEqual(beat.features, []);
    assert.equal(beat.maxJobs, 1);
    assert.equal(beat.protocol, PROTOCOL_VERSION);

    await env.queues.add(drv.data);
    // While it builds, the heartbeat lists the running build.
    const running = await waitFor(
      'a heartbeat listing the build',
      async () => {
        const hb = await heartbeatOf(env, 'spoke-ok');
        return hb?.running.includes(drv.data.drvHash) ? hb : undefined;
      },
      30_000,
      env.outputs,
    );
    assert.deepEqual(running.systems, [system]);

    const job = await env.queues.finished(drv.data, 120_000, env.outputs);
    assert.equal(await job.getState(), 'completed', `job failed: ${job.failedReason}\n${env.outputs()}`);
    const result = job.returnvalue;
    assert.deepEqual(result.outputs, { out: drv.out });
    assert.equal(result.spoke, 'spoke-ok');
    assert.equal(result.protocol, PROTOCOL_VERSION);
    assert.equal(result.logPath, `log/${basename(drv.data.drvPath)}`);
    assert.ok(result.startedAt <= result.finishedAt);
    assert.equal(job.attemptsMade, 1, 'one attempt');

    // Nothing was built on this machine's store: the spoke built in its chroot store.
    assert.equal(existsSync(drv.out), false, 'the output must not exist in /nix/store');

    // The output's narinfo is in narhub, signed by main-1, and refers to the input.
    const narinfo = await (await fetch(`${cacheUrl}/${hashPart(drv.out)}.narinfo`)).text();
    assert.match(narinfo, new RegExp(`^StorePath: ${drv.out}$`, 'm'));
    assert.match(narinfo, /^Sig: main-1:/m);
    assert.match(narinfo, new RegExp(`^References: .*${basename(drv.input!)}`, 'm'));
    // ... and the signature is valid: a client trusting only main-1 substitutes it.
    const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
    const clientStore = client.freshPath('client-store');
    await client.run('nix', ['copy', '--from', cacheUrl, '--to', clientStore, drv.out]);
    assert.ok(existsSync(join(clientStore, drv.out, 'data')));

    // The log is stored in narhub and holds the builder's output, and shows the input being
    // substituted from narhub rather than built.
    const logRes = await fetch(`${cacheUrl}/log/${basename(drv.data.drvPath)}`);
    assert.equal(logRes.status, 200);
    const log = await logRes.text();
    assert.ok(log.includes(drv.echo), `log lacks the builder's echo:\n${log}`);
    assert.ok(log.includes('builder-finished'));
    assert.ok(
      log.includes(`copying path '${drv.input}' from '${cacheUrl}'`),
      `the input was not substituted from narhub:\n${log}`,
    );
    assert.ok(!log.includes(`building '${drv.input}`), 'the input must not be built');

    // The live stream has the same text and an end-of-file entry.
    const stream = await readStream(env.redis, drv.data.drvHash);
    assert.ok(stream.text.includes(drv.echo));
    assert.ok(stream.eof, 'the log stream must end with eof');

    // A clean stop deletes the heartbeat and exits 0.
    spoke.signal('SIGTERM');
    assert.deepEqual(await spoke.exited, { code: 0, signal: null }, spoke.output());
    assert.equal(await env.redis.exists(spokeKey('spoke-ok')), 0);
  });

  test('input outputs sent with the job are taken as they are: the input .drvs are not read', async (t) => {
    const env = await setup(t);
    const drv = await makeDrv('known-inputs', 'mkdir $out; ln -s $input $out/input', { input: true });
    const shown = JSON.parse((await uploader.run('nix', ['show-derivation', drv.data.drvPath])).stdout) as Record<
      string,
      { inputDrvs: Record<string, string[]> }
    >;
    const inputDrv = Object.keys(shown[drv.data.drvPath]!.inputDrvs)[0]!;
    // The input .drv's file in the cache, broken: a spoke that reads it fails its check.
    await breakNarInCache(inputDrv);
    await env.spoke('spoke-known-inputs', { args: ['--network-retries', '0'] });

    // Without the input's outputs in the job, the spoke reads the broken .drv and fails.
    await env.queues.add(drv.data, { attempts: 1 });
    const failed = await env.queues.finished(drv.data, 60_000, env.outputs);
    assert.equal(await failed.getState(), 'failed');
    assert.equal(parseFailure(failed.failedReason).kind, 'infrastructure', failed.failedReason);
    await failed.remove();

    // With them (as the hub sends them), it never reads it, and builds.
    await env.queues.add({ ...drv.data, inputOutputs: { [inputDrv]: { out: drv.input! } } });
    await assertBuiltAndPushed(env, drv);
  });

  test("the .drv text sent with the job is used once checked against its path; the cache's is not read", async (t) => {
    const env = await setup(t);
    const drv = await makeDrv('carried-drv', 'touch $out');
    const text = (await uploader.run('nix', ['store', 'cat', drv.data.drvPath])).stdout;
    // The .drv's file in the cache, broken: a spoke that reads it fails its check.
    await breakNarInCache(drv.data.drvPath);
    await env.spoke('spoke-carried-drv', { args: ['--network-retries', '0'] });

    await env.queues.add(drv.data, { attempts: 1 });
    const failed = await env.queues.finished(drv.data, 60_000, env.outputs);
    assert.equal(await failed.getState(), 'failed', 'without the text, the spoke reads the broken file');
    await failed.remove();

    // A text that is not the path's is refused at once, without retries.
    await env.queues.add({ ...drv.data, drvText: text.replace('touch', 'rm -f') }, { attempts: 3 });
    const refused = await env.queues.finished(drv.data, 60_000, env.outputs);
    assert.equal(await refused.getState(), 'failed');
    assert.match(refused.failedReason, /invalid job: drvText is not the text of/);
    assert.equal(refused.attemptsMade, 1);
    await refused.remove();

    await env.queues.add({ ...drv.data, drvText: text });
    await assertBuiltAndPushed(env, drv);
  });

  test('a job with malformed input outputs is refused as invalid, without retries', async (t) => {
    const env = await setup(t);
    const drv = await makeDrv('bad-inputs', 'touch $out');
    await env.spoke('spoke-bad-inputs');
    await env.queues.add({ ...drv.data, inputOutputs: { '/nix/store/not-a-drv': { out: '/tmp/x' } } }, { attempts: 3 });
    const job = await env.queues.finished(drv.data, 60_000, env.outputs);
    assert.equal(await job.getState(), 'failed');
    assert.match(job.failedReason, /invalid job: inputOutputs/);
    assert.equal(job.attemptsMade, 1);
  });

  test('a failing build fails the job at once with kind build (no retries)', async (t) => {
    const env = await setup(t);
    const drv = await makeDrv('fail', 'echo about-to-fail; exit 3');
    await env.spoke('spoke-fail');
    await env.queues.add(drv.data, { attempts: 3 });
    const job = await env.queues.finished(drv.data, 120_000, env.outputs);
    assert.equal(await job.getState(), 'failed');
    const failure = parseFailure(job.failedReason);
    assert.equal(failure.kind, 'build', `${job.failedReason}\n${env.outputs()}`);
    assert.match(failure.message, /builder for '.*spoke-fail-.*\.drv' failed with exit code 3/);
    assert.equal(job.attemptsMade, 1, 'an unrecoverable failure must not be retried');
    // The log of the failed build is stored too.
    const log = await (await fetch(`${cacheUrl}/log/${basename(drv.data.drvPath)}`)).text();
    assert.ok(log.includes('about-to-fail'), log);
  });

  test('a build past its time limit fails with kind timeout (no retries)', async (t) => {
    const env = await setup(t);
    const drv = await makeDrv('slow', 'sleep 30; touch $out', { timeout: 2 });
    await env.spoke('spoke-timeout');
    await env.queues.add(drv.data, { attempts: 3 });
    const job = await env.queues.finished(drv.data, 60_000, env.outputs);
    assert.equal(await job.getState(), 'failed');
    assert.equal(parseFailure(job.failedReason).kind, 'timeout', `${job.failedReason}\n${env.outputs()}`);
    assert.equal(job.attemptsMade, 1);
  });

  test('a push the cache cuts short is tried again on a fresh serve connection, and the job succeeds', async (t) => {
    const env = await setup(t);
    // 8 MB of output, so the first upload is cut while the NAR still streams.
    const drv = await makeDrv('cut-push', 'head -c 8000000 /dev/urandom > $out');
    // In front of narhub: the first path upload is answered 503 before its body is read, and
    // the connection dropped; everything else goes through.
    let cut = 0;
    const proxy = createServer((req, res) => {
      if (req.method === 'PUT' && req.url?.startsWith('/api/v1/caches/main/paths/') && cut++ === 0) {
        res.writeHead(503, { connection: 'close', 'content-type': 'application/json' });
        res.end('{"code":"UNAVAILABLE","message":"cut short by the test"}');
        req.socket.destroySoon();
        return;
      }
      const target = new URL(server.url);
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
    const { port } = proxy.address() as AddressInfo;
    await env.spoke('spoke-cut', { hub: `http://127.0.0.1:${port}`, args: ['--retry-delay', '200'] });
    await env.queues.add(drv.data, { attempts: 1 });
    const job = await env.queues.finished(drv.data, 120_000, env.outputs);
    assert.equal(await job.getState(), 'completed', `${job.failedReason}\n${env.outputs()}`);
    assert.ok(cut >= 2, 'the first upload was cut and tried again');
    assert.match(env.outputs(), /network step failed, retrying/);
  });

  test('an unreachable cache is an infrastructure failure, retried with backoff', async (t) => {
    const env = await setup(t);
    const drv = await makeDrv('infra', 'touch $out');
    // A cache narhub does not have: fetching the derivation fails every time.
    drv.data.cacheName = 'no-such-cache';
    await env.spoke('spoke-infra', { args: ['--network-retries', '1'] });
    await env.queues.add(drv.data, { attempts: 2 });
    const job = await env.queues.finished(drv.data, 60_000, env.outputs);
    assert.equal(await job.getState(), 'failed');
    assert.equal(parseFailure(job.failedReason).kind, 'infrastructure', `${job.failedReason}\n${env.outputs()}`);
    assert.equal(job.attemptsMade, 2, 'an infrastructure failure uses every attempt');
  });

  test('a feature queue is worked only by a spoke with the feature, once it is active', async (t) => {
    const env = await setup(t);
    const feature = `kvm${randomBytes(2).toString('hex')}`;
    const drv = await makeDrv('feature', 'touch $out', { features: [feature] });
    const plain = await env.spoke('spoke-plain');
    const featured = await env.spoke('spoke-featured', { features: [feature] });

    await env.queues.add(drv.data);
    // Not yet in ACTIVE_QUEUES_KEY: nobody works the queue.
    await sleep(1_000);
    assert.equal(await env.queues.state(drv.data), 'waiting');

    await env.redis.sadd(ACTIVE_QUEUES_KEY, queueName(system, [feature]));
    const job = await env.queues.finished(drv.data, 60_000, env.outputs);
    assert.equal(await job.getState(), 'completed', `${job.failedReason}\n${env.outputs()}`);
    assert.equal(job.returnvalue.spoke, 'spoke-featured');
    assert.equal(job.attemptsMade, 1, 'one attempt');
    assert.ok(featured.output().includes(queueName(system, [feature])));
    assert.ok(
      !plain.output().includes(queueName(system, [feature])),
      'the spoke without the feature must not work its queue',
    );
  });

  test('--max-jobs bounds builds across queues; a full spoke leaves work to an idle one', async (t) => {
    const env = await setup(t);
    const feature = `f${randomBytes(2).toString('hex')}`;
    await env.redis.sadd(ACTIVE_QUEUES_KEY, queueName(system, [feature]));
    // `a` runs long enough for the second spoke to start (slowly, on a loaded machine) before
    // the first one is free again.
    const a = await makeDrv('slot-a', 'sleep 10; touch $out');
    const b = await makeDrv('slot-b', 'sleep 1; touch $out', { features: [feature] });
    const first = await env.spoke('spoke-first', { features: [feature], maxJobs: 1 });
    await waitFor(
      'the first spoke to work the feature queue',
      () => (first.output().includes(queueName(system, [feature])) ? true : undefined),
      10_000,
    );

    const maxRunning: number[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const hb = await heartbeatOf(env, 'spoke-first').catch(() => undefined);
        if (hb) maxRunning.push(hb.running.length);
        await sleep(100);
      }
    })();

    await env.queues.add(a.data);
    await buildRunning(env, a);
    // The first spoke is full: the job in its other queue waits for a free spoke.
    await env.queues.add(b.data);
    await sleep(1_000);
    assert.equal(await env.queues.state(b.data), 'waiting', env.outputs());
    const second = await env.spoke('spoke-second', { features: [feature], maxJobs: 1 });

    const [ja, jb] = await Promise.all([
      env.queues.finished(a.data, 60_000, env.outputs),
      env.queues.finished(b.data, 60_000, env.outputs),
    ]);
    watching = false;
    await watcher;
    assert.equal(await ja.getState(), 'completed', `${ja.failedReason}\n${env.outputs()}`);
    assert.equal(await jb.getState(), 'completed', `${jb.failedReason}\n${env.outputs()}`);
    assert.equal(ja.returnvalue.spoke, 'spoke-first');
    assert.equal(jb.returnvalue.spoke, second.id);
    assert.ok(Math.max(...maxRunning) <= 1, `the first spoke ran more than one build: ${maxRunning.join(',')}`);
  });

  test('SIGTERM lets the running build finish and push, then the spoke exits 0', async (t) => {
    const env = await setup(t);
    const drv = await makeDrv('drain', 'sleep 3; echo drained > $out');
    const spoke = await env.spoke('spoke-drain');
    await env.queues.add(drv.data);
    await buildRunning(env, drv);
    spoke.signal('SIGTERM');
    const exit = await spoke.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, spoke.output());
    // By the time it exited, the job was done and its output in narhub.
    assert.equal(await env.queues.state(drv.data), 'completed', spoke.output());
    const narinfo = await fetch(`${cacheUrl}/${hashPart(drv.out)}.narinfo`);
    assert.equal(narinfo.status, 200);
    assert.equal(await env.redis.exists(spokeKey('spoke-drain')), 0, 'the heartbeat must be deleted');
  });

  test('a second signal exits at once and kills the running build', async (t) => {
    const env = await setup(t);
    const marker = `41.${parseInt(randomBytes(3).toString('hex'), 16)}`;
    const drv = await makeDrv('hardstop', `sleep ${marker}; touch $out`);
    const spoke = await env.spoke('spoke-hardstop');
    await env.queues.add(drv.data);
    await buildRunning(env, drv);
    const sleeping = () => processCommandLines().filter((p) => p.args === `sleep ${marker}`);
    await waitFor('the builder sleep to run', () => (sleeping().length > 0 ? true : undefined), 10_000);
    spoke.signal('SIGTERM');
    await sleep(300);
    spoke.signal('SIGTERM');
    const exit = await Promise.race([spoke.exited, sleep(5_000).then(() => 'still running' as const)]);
    assert.notEqual(exit, 'still running', spoke.output());
    assert.notEqual((exit as { code: number | null }).code, 0);
    await waitFor('the builder sleep to be gone', () => (sleeping().length === 0 ? true : undefined), 5_000);
    // The job stays active until its lock expires; then another spoke would take it.
    assert.equal(await env.queues.state(drv.data), 'active');
  });

  test('a spoke killed mid-build loses nothing: another spoke completes the job', async (t) => {
    const env = await setup(t);
    const drv = await makeDrv('failover', 'sleep 4; echo survived > $out');
    const short = ['--lock-duration', '2000', '--stalled-interval', '500'];
    const doomed = await env.spoke('spoke-doomed', { args: short });
    await env.queues.add(drv.data);
    await buildRunning(env, drv);
    doomed.signal('SIGKILL');
    await doomed.exited;

    await env.spoke('spoke-heir', { args: short });
    const job = await env.queues.finished(drv.data, 90_000, env.outputs);
    assert.equal(await job.getState(), 'completed', `${job.failedReason}\n${env.outputs()}`);
    assert.equal(job.returnvalue.spoke, 'spoke-heir');
    assert.deepEqual(job.returnvalue.outputs, { out: drv.out });
  });

  test('a spoke killed mid-push: nothing partial is visible or left, and another spoke builds it', async (t) => {
    const env = await setup(t);
    // 24 MB of output through a relay that passes 3 MB a second: the push lasts about 8 s.
    const drv = await makeDrv('kill-push', 'head -c 24000000 /dev/urandom > $out');
    const target = new URL(server.url);
    let uploaded = 0;
    const slow = await startTcpProxy(
      t,
      { host: target.hostname, port: Number(target.port) },
      { bytesPerSecond: 3_000_000, onClientBytes: (n) => (uploaded += n) },
    );
    const short = ['--lock-duration', '2000', '--stalled-interval', '500'];
    const doomed = await env.spoke('spoke-pushing-doomed', { hub: slow.url, args: short });
    await env.queues.add(drv.data, { attempts: 3 });
    await buildRunning(env, drv);
    // Mid-push: the build is over and a third of its output went to narhub.
    await waitFor(
      'a third of the output to be sent',
      () => (uploaded > 8_000_000 ? true : undefined),
      60_000,
      env.outputs,
    );
    doomed.signal('SIGKILL');
    await doomed.exited;
    const hash = hashPart(drv.out);
    const storeRoot = join(server.dataDir, 'store');
    assert.equal(
      (await checkVisible(cacheUrl, server.publicKey, [hash])).size,
      0,
      'nothing of the cut push is visible',
    );
    await waitFor('the cut upload to leave no temporary file', () =>
      tempFiles(storeRoot).length === 0 ? true : undefined,
    );

    await env.spoke('spoke-push-heir', { args: short });
    const job = await env.queues.finished(drv.data, 90_000, env.outputs);
    assert.equal(await job.getState(), 'completed', `${job.failedReason}\n${env.outputs()}`);
    assert.equal(job.returnvalue.spoke, 'spoke-push-heir');
    assert.deepEqual([...(await checkVisible(cacheUrl, server.publicKey, [hash]))], [hash]);
    assert.equal(await builtIn(env, 'spoke-push-heir', drv.out), true, 'the heir built it');
  });

  /** Whether `path` is valid in the spoke's store, built there rather than imported (`ultimate`). */
  const builtIn = async (env: Env, id: string, path: string): Promise<boolean> => {
    const res = await spokeNix.tryRun('nix', ['path-info', '--json', '--store', env.stores.get(id)!, path]);
    const info = (res.stdout.trim().startsWith('[') ? JSON.parse(res.stdout) : []) as {
      path: string;
      valid?: boolean;
      ultimate?: boolean;
    }[];
    return info.some((i) => i.path === path && i.valid !== false && i.ultimate === true);
  };

  test('narhub away after a build: the spoke keeps pushing until it is back; the job is not built again', async (t) => {
    const env = await setup(t);
    const target = new URL(server.url);
    const proxy = await startTcpProxy(t, { host: target.hostname, port: Number(target.port) });
    const drv = await makeDrv('push-later', 'sleep 2; echo built > $out');
    const first = await env.spoke('spoke-pushing', {
      hub: proxy.url,
      args: ['--network-retries', '1', '--push-retry-for', '5m'],
    });
    await env.queues.add(drv.data, { attempts: 3 });
    await buildRunning(env, drv);
    await proxy.down();
    // Another spoke, free to take the job should it come back to the queue.
    await env.spoke('spoke-idle');
    await waitFor(
      'the push to fail',
      () => (/pushing outputs failed/.test(first.output()) ? true : undefined),
      60_000,
      env.outputs,
    );
    // Far longer than --network-retries 1 with --retry-delay 100 lasts.
    await sleep(4_000);
    assert.equal(await env.queues.state(drv.data), 'active', `the job stays with its spoke\n${env.outputs()}`);
    await proxy.up();
    const job = await env.queues.finished(drv.data, 90_000, env.outputs);
    assert.equal(await job.getState(), 'completed', `${job.failedReason}\n${env.outputs()}`);
    assert.equal(job.returnvalue.spoke, 'spoke-pushing');
    assert.equal(job.attemptsStarted, 1, 'the job was taken once');
    assert.equal((await fetch(`${cacheUrl}/${hashPart(drv.out)}.narinfo`)).status, 200);
    assert.equal(await builtIn(env, 'spoke-idle', drv.out), false, 'the other spoke never built it');
  });

  test('a spoke stopped past its lock: the next spoke waits, then takes the outputs from the cache', async (t) => {
    const env = await setup(t);
    const drv = await makeDrv('stopped', 'sleep 10; echo built-once > $out');
    const short = ['--lock-duration', '1000', '--stalled-interval', '300'];
    const first = await env.spoke('spoke-stopped', { args: short });
    await env.queues.add(drv.data, { attempts: 3 });
    await buildRunning(env, drv);
    await waitFor('the heartbeat to show the build', async () =>
      (await heartbeatOf(env, 'spoke-stopped'))?.running.includes(drv.data.drvHash) ? true : undefined,
    );
    // SIGSTOP: the spoke's event loop stands still (as under CPU starvation) while Nix builds on.
    // Stopped before the second spoke starts, so a slow start cannot let the build end and the job
    // complete first (seen under a load average of 16); it stays well within the heartbeat's TTL.
    first.signal('SIGSTOP');
    t.after(() => first.signal('SIGCONT'));
    const second = await env.spoke('spoke-second', { args: short });
    await waitFor(
      'the second spoke to take the job and wait',
      () => (/another spoke is building this derivation/.test(second.output()) ? true : undefined),
      60_000,
      env.outputs,
    );
    first.signal('SIGCONT');
    const job = await env.queues.finished(drv.data, 90_000, env.outputs);
    assert.equal(await job.getState(), 'completed', `${job.failedReason}\n${env.outputs()}`);
    assert.ok(job.attemptsStarted >= 2, 'the job did go to the second spoke');
    assert.equal(job.returnvalue.spoke, 'spoke-stopped', 'the result names the spoke that built it');
    assert.deepEqual(job.returnvalue.outputs, { out: drv.out });
    assert.equal(await builtIn(env, 'spoke-stopped', drv.out), true);
    assert.equal(await builtIn(env, 'spoke-second', drv.out), false, 'the second spoke did not build it again');
  });

  test('a cancel message kills the build process tree and fails the job with kind cancelled', async (t) => {
    const env = await setup(t);
    // A sleep with a unique argument, to find the builder's process.
    const marker = `40.${parseInt(randomBytes(3).toString('hex'), 16)}`;
    const drv = await makeDrv('cancel', `sleep ${marker}; touch $out`);
    await env.spoke('spoke-cancel');
    await env.queues.add(drv.data, { attempts: 3 });
    await buildRunning(env, drv);
    const sleeping = () => processCommandLines().filter((p) => p.args === `sleep ${marker}`);
    await waitFor('the builder sleep to run', () => (sleeping().length > 0 ? true : undefined), 10_000);

    await env.redis.publish(CANCEL_CHANNEL, drv.data.drvHash);
    const job = await env.queues.finished(drv.data, 30_000, env.outputs);
    assert.equal(await job.getState(), 'failed');
    assert.equal(parseFailure(job.failedReason).kind, 'cancelled', `${job.failedReason}\n${env.outputs()}`);
    assert.equal(job.attemptsMade, 1, 'a cancelled job is not retried');
    // The whole process tree is gone, the builder's sleep included.
    await waitFor(
      'the builder sleep to be gone',
      () => (sleeping().length === 0 ? true : undefined),
      5_000,
      () => JSON.stringify(sleeping()),
    );
  });
});
