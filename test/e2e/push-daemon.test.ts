// Automatic push from builders: Nix's post-build-hook runs `narhub queue-push`, and
// `narhub push-daemon` drains that queue into a real narhub, with the real Nix 2.8 client.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCacheProxy } from '../helpers/cache-proxy.js';
import { startCliDaemon } from '../helpers/cli-daemon.js';
import { waitFor } from '../helpers/hub.js';
import { getNarinfo, verifyNarinfoSig } from '../helpers/http.js';
import { buildBigPath, buildClosure, createNixEnv, hashPart } from '../helpers/nix.js';
import { CLI_PATH, createToken, runCli, runCliOk, startServer, type RunningServer } from '../helpers/server.js';
import { literal } from '../helpers/scenario.js';
import { makeTempDir, type Cleanup } from '../helpers/tmp.js';

const PUSH_TIMEOUT_MS = 120_000;

/** The entries waiting in a queue directory. */
async function queued(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.paths')).sort();
}

async function queueDrained(dir: string): Promise<void> {
  await waitFor(`the queue ${dir} to be empty`, async () => (await queued(dir)).length === 0, PUSH_TIMEOUT_MS);
}

/** A server, a write token in a file (as LoadCredential hands it over), and a queue directory. */
async function setUp(t: Cleanup): Promise<{ server: RunningServer; tokenFile: string; queueDir: string }> {
  const server = await startServer(t);
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const dir = await makeTempDir(t, 'narhub-autopush-');
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  return { server, tokenFile, queueDir: join(dir, 'queue') };
}

/** A fresh store trusting only the cache's key substitutes `path` from it. */
async function substitutes(t: Cleanup, server: RunningServer, path: string): Promise<string> {
  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', `${server.url}/main`, '--to', store, path]);
  return store;
}

test('queue-push as hook queues builds, no server; push-daemon pushes each once, signed, substitutable', async (t) => {
  const { server, tokenFile, queueDir } = await setUp(t);
  const cacheUrl = `${server.url}/main`;
  const hook = join(await makeTempDir(t, 'narhub-hook-'), 'post-build-hook');
  await writeFile(hook, `#!/bin/sh\nexec ${process.execPath} ${CLI_PATH} queue-push --queue ${queueDir} $OUT_PATHS\n`);
  await chmod(hook, 0o755);
  const nix = await createNixEnv(t, { extraConf: [`post-build-hook = ${hook}`] });

  // Nix runs the hook after each of the three builds; nothing listens for uploads yet.
  const closure = await buildClosure(nix, 'hook');
  const entries = await queued(queueDir);
  assert.equal(entries.length, 3, `one entry per build: ${entries.join(', ')}`);
  const texts = await Promise.all(entries.map((e) => readFile(join(queueDir, e), 'utf8')));
  assert.deepEqual(texts.map((x) => x.trim()).sort(), [...closure.paths].sort());
  for (const p of closure.paths) assert.equal((await getNarinfo(cacheUrl, p)).status, 404, `${p} is not pushed yet`);
  // The same path queued a second time, by hand.
  await runCliOk(['queue-push', '--queue', queueDir, closure.top]);

  const proxy = await startCacheProxy(t, server.url);
  const daemon = startCliDaemon(
    t,
    ['push-daemon', `${proxy.url}/main`, '--queue', queueDir, '--token-file', tokenFile],
    nix.env,
  );
  await daemon.waitFor(/^push-daemon: pushing what is queued in /m);
  await queueDrained(queueDir);
  for (const p of closure.paths) {
    const got = await getNarinfo(cacheUrl, p);
    assert.equal(got.status, 200, `${p}: ${got.body}`);
    assert.ok(verifyNarinfoSig(got.narinfo!, server.publicKey), `main-1 signs ${p}`);
    assert.equal(proxy.uploads(hashPart(p)), 1, `${p} is uploaded once`);
  }
  assert.match(daemon.output(), /^4 queue entries, 3 paths with a closure of 3: 3 uploaded, 0 already in the cache$/m);

  // Queued again once it is in the cache: asked about, not uploaded.
  const mark = daemon.output().length;
  await runCliOk(['queue-push', '--queue', queueDir, closure.top]);
  await daemon.waitFor(
    /^1 queue entry, 1 path with a closure of 3: 0 uploaded, 3 already in the cache$/m,
    30_000,
    mark,
  );
  for (const p of closure.paths) assert.equal(proxy.uploads(hashPart(p)), 1, `${p} is still uploaded once`);

  const store = await substitutes(t, server, closure.top);
  assert.equal(await readFile(join(store, closure.top, 'data'), 'utf8'), `top-${closure.nonce}\n`);

  daemon.signal('SIGTERM');
  assert.deepEqual(await daemon.exited, { code: 0, signal: null });
  assert.match(daemon.output(), /^stopped$/m);
});

test('push-daemon SIGKILLed mid-upload loses nothing: restarted, it pushes the path, which substitutes', async (t) => {
  const { server, tokenFile, queueDir } = await setUp(t);
  const nix = await createNixEnv(t);
  const big = await buildBigPath(nix, 'sigkill', 8 * 1024 * 1024);
  await runCliOk(['queue-push', '--queue', queueDir, big]);
  const [entry] = await queued(queueDir);

  // The proxy holds the upload once its first bytes arrived: the daemon is mid-push.
  const proxy = await startCacheProxy(t, server.url);
  const held = proxy.holdUploads();
  const first = startCliDaemon(
    t,
    ['push-daemon', `${proxy.url}/main`, '--queue', queueDir, '--token-file', tokenFile],
    nix.env,
  );
  assert.equal(await held, hashPart(big));
  first.signal('SIGKILL');
  assert.equal((await first.exited).signal, 'SIGKILL');
  assert.deepEqual(await queued(queueDir), [entry], 'the entry is still queued');
  assert.equal((await getNarinfo(`${server.url}/main`, big)).status, 404);

  // A new daemon takes over the dead one's lock and finishes the job.
  const second = startCliDaemon(
    t,
    ['push-daemon', `${server.url}/main`, '--queue', queueDir, '--token-file', tokenFile],
    nix.env,
  );
  await queueDrained(queueDir);
  assert.match(second.output(), /^pushed \/nix\/store\/\S+-sigkill-big \(8\.0 MiB/m);
  const store = await substitutes(t, server, big);
  const [original, copy] = await Promise.all([readFile(join(big, 'blob')), readFile(join(store, big, 'blob'))]);
  assert.ok(original.equals(copy), 'the substituted blob is the built one');
});

test('push-daemon backs off from a mute cache, keeps a failed entry, moves a refused one to failed/', async (t) => {
  const { server, tokenFile, queueDir } = await setUp(t);
  const nix = await createNixEnv(t);
  const good = await buildClosure(nix, 'backoff-good');
  const bad = await buildClosure(nix, 'backoff-bad');
  const proxy = await startCacheProxy(t, server.url);
  const unavailable = { status: 503, code: 'UNAVAILABLE', message: 'temporarily unavailable' };
  proxy.refuse({ method: 'POST', urlIncludes: '/missing-paths', times: 2, ...unavailable });
  proxy.refuse({ method: 'PUT', urlIncludes: hashPart(good.paths[0]!), times: 1, ...unavailable });
  proxy.refuse({
    method: 'PUT',
    urlIncludes: hashPart(bad.paths[0]!),
    times: 1,
    status: 400,
    code: 'NAR_INVALID',
    message: 'refused by the test',
  });
  await runCliOk(['queue-push', '--queue', queueDir, good.top]);
  await runCliOk(['queue-push', '--queue', queueDir, bad.top]);
  const [goodEntry, badEntry] = await queued(queueDir);

  const daemon = startCliDaemon(
    t,
    ['push-daemon', `${proxy.url}/main`, '--queue', queueDir, '--token-file', tokenFile, '--retries', '0'],
    nix.env,
  );
  await queueDrained(queueDir);
  const out = daemon.output();
  const pauses = [
    ...out.matchAll(/^cannot push now \(.*HTTP 503 UNAVAILABLE.*\); 2 queued, trying again in ([\d.]+) s$/gm),
  ];
  assert.equal(pauses.length, 2, out);
  assert.ok(Number(pauses[1]![1]) >= Number(pauses[0]![1]), `the second wait is no shorter:\n${out}`);
  assert.match(
    out,
    new RegExp(
      `^keeping ${literal(goodEntry!)} \\(attempt 1 failed: ${literal(good.paths[0]!)}: HTTP 503 UNAVAILABLE`,
      'm',
    ),
  );
  for (const p of good.paths) assert.equal((await getNarinfo(`${server.url}/main`, p)).status, 200, p);

  const failedDir = join(queueDir, 'failed');
  assert.deepEqual((await readdir(failedDir)).sort(), [badEntry, `${badEntry}.why`]);
  assert.equal((await readFile(join(failedDir, badEntry!), 'utf8')).trim(), bad.top);
  const why = await readFile(join(failedDir, `${badEntry}.why`), 'utf8');
  assert.match(why, new RegExp(`^${literal(bad.paths[0]!)}: HTTP 400 NAR_INVALID: refused by the test$`, 'm'));
  assert.match(why, new RegExp(`^${literal(bad.top)}: its reference ${literal(bad.paths[1]!)} was not pushed$`, 'm'));
  assert.equal((await getNarinfo(`${server.url}/main`, bad.paths[0]!)).status, 404);
});

test('push-daemon --max-size leaves out a big NAR and what needs it, until the cache has it', async (t) => {
  const { server, tokenFile, queueDir } = await setUp(t);
  const nix = await createNixEnv(t);
  const nonce = randomBytes(6).toString('hex');
  const file = join(nix.workDir, `max-size-${nonce}.nix`);
  const sh = (name: string, script: string, deps = '') =>
    `derivation { name = "${name}-${nonce}"; system = builtins.currentSystem; builder = "/bin/sh"; ${deps} args = [ ` +
    `"-c" "export PATH=/usr/bin:/bin; ${script}" ]; }`;
  await writeFile(
    file,
    `rec {
  big = ${sh('max-size-big', 'head -c 2097152 /dev/urandom > $out')};
  needsBig = ${sh('max-size-needs-big', 'mkdir $out; ln -s $big $out/big', 'inherit big;')};
  alsoNeedsBig = ${sh('max-size-also-needs-big', 'mkdir $out; ln -s $big $out/big', 'inherit big;')};
  small = ${sh('max-size-small', 'echo small > $out')};
}
`,
  );
  const attrs = ['big', 'needsBig', 'alsoNeedsBig', 'small'];
  const built = await nix.run('nix-build', ['--no-out-link', file, ...attrs.flatMap((a) => ['-A', a])]);
  const [big, needsBig, alsoNeedsBig, small] = built.stdout.trim().split('\n') as [string, string, string, string];
  assert.match(needsBig, /-max-size-needs-big-/);

  await runCliOk(['queue-push', '--queue', queueDir, needsBig, small]);
  const args = [
    'push-daemon',
    `${server.url}/main`,
    '--queue',
    queueDir,
    '--token-file',
    tokenFile,
    '--max-size',
    '1M',
  ];
  const daemon = startCliDaemon(t, args, nix.env);
  await queueDrained(queueDir);
  const out = daemon.output();
  assert.match(out, new RegExp(`^leaving out ${literal(big)}: its NAR is 2\\.0 MiB, over --max-size 1M$`, 'm'));
  assert.match(out, new RegExp(`^leaving out ${literal(needsBig)}: needs ${literal(big)}, which is left out$`, 'm'));
  assert.match(out, /^1 queue entry, 2 paths with a closure of 3: 1 uploaded, 0 already in the cache, 2 left out$/m);
  const status = async (p: string) => (await getNarinfo(`${server.url}/main`, p)).status;
  assert.deepEqual(await Promise.all([big, needsBig, small].map(status)), [404, 404, 200]);
  await assert.rejects(readdir(join(queueDir, 'failed')), { code: 'ENOENT' }, 'left out is not failed');

  // The big path pushed by hand: what needs it is no longer held back.
  const token = (await readFile(tokenFile, 'utf8')).trim();
  await runCliOk(['push', `${server.url}/main`, big, '--token', token], { env: nix.env });
  const mark = daemon.output().length;
  await runCliOk(['queue-push', '--queue', queueDir, alsoNeedsBig]);
  await daemon.waitFor(
    /^1 queue entry, 1 path with a closure of 2: 1 uploaded, 1 already in the cache$/m,
    PUSH_TIMEOUT_MS,
    mark,
  );
  assert.equal(await status(alsoNeedsBig), 200);
});

test('push-daemon --drain: 0 once the queue is pushed; 1 with a kept entry, tried once, or no cache', async (t) => {
  const { server, tokenFile, queueDir } = await setUp(t);
  const nix = await createNixEnv(t);
  const ok = await buildClosure(nix, 'drain-ok');
  const flaky = await buildClosure(nix, 'drain-flaky');
  const later = await buildClosure(nix, 'drain-later');
  const proxy = await startCacheProxy(t, server.url);
  proxy.refuse({
    method: 'PUT',
    urlIncludes: hashPart(flaky.paths[0]!),
    times: 1,
    status: 503,
    code: 'UNAVAILABLE',
    message: 'temporarily unavailable',
  });
  await runCliOk(['queue-push', '--queue', queueDir, ok.top]);
  await runCliOk(['queue-push', '--queue', queueDir, flaky.top]);
  const [, flakyEntry] = await queued(queueDir);
  const drain = (url: string) =>
    runCli(
      ['push-daemon', `${url}/main`, '--queue', queueDir, '--token-file', tokenFile, '--retries', '0', '--drain'],
      {
        env: nix.env,
      },
    );
  const status = async (p: string) => (await getNarinfo(`${server.url}/main`, p)).status;

  const first = await drain(proxy.url);
  assert.equal(first.code, 1, first.stderr);
  assert.match(
    first.stderr,
    new RegExp(`^keeping ${literal(flakyEntry!)} \\(failed: ${literal(flaky.paths[0]!)}: HTTP 503`, 'm'),
  );
  assert.match(first.stderr, /^drained: 1 entry pushed; 1 kept after a failed push; 1 left in the queue$/m);
  assert.equal(proxy.refused(), 1, 'the failed entry is tried once');
  assert.deepEqual(await queued(queueDir), [flakyEntry]);
  for (const p of ok.paths) assert.equal(await status(p), 200, p);

  const second = await drain(proxy.url);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /^drained: 1 entry pushed$/m);
  assert.deepEqual(await queued(queueDir), []);
  for (const p of flaky.paths) assert.equal(await status(p), 200, p);

  await runCliOk(['queue-push', '--queue', queueDir, later.top]);
  const down = await drain('http://127.0.0.1:1');
  assert.equal(down.code, 1, down.stderr);
  assert.match(down.stderr, /^cannot push now \(.*ECONNREFUSED.*\); 1 queued, left for the next run$/m);
  assert.match(
    down.stderr,
    /^drained: 0 entries pushed; the cache could not be asked what it lacks; 1 left in the queue$/m,
  );
  assert.equal((await queued(queueDir)).length, 1);
});

test('queue-push, push-daemon, watch-store: bad arguments exit 2 with usage; no paths queue nothing', async (t) => {
  const dir = await makeTempDir(t, 'narhub-autopush-args-');
  const queue = join(dir, 'queue');
  const cases: string[][] = [
    ['queue-push', '--queue', queue, '/tmp/not-a-store-path'],
    ['queue-push', '--queue', queue, '/nix/store/00000000000000000000000000000000-ok', 'relative'],
    ['push-daemon', '--queue', queue],
    ['push-daemon', 'ftp://x/main', '--queue', queue],
    ['push-daemon', 'http://127.0.0.1:1/main', '--queue', queue, '--include', '/nix/store/*'],
    ['push-daemon', 'http://127.0.0.1:1/main', '--queue', queue, '--token', 'a', '--token-file', '/x'],
    ['push-daemon', 'http://127.0.0.1:1/main', '--queue', queue, '--max-size', '0'],
    ['push-daemon', 'http://127.0.0.1:1/main', '--queue', queue, '--max-size', 'big'],
    ['watch-store', 'http://127.0.0.1:1/main', '--state', dir, '--interval', '0'],
  ];
  for (const args of cases) {
    const res = await runCli(args);
    assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, /usage:/);
  }
  assert.deepEqual(await queued(queue), [], 'a refused queue-push queues nothing');
  const none = await runCli(['queue-push', '--queue', queue]);
  assert.equal(none.code, 0, none.stderr);
  assert.deepEqual(await queued(queue), []);
});

test('push-daemon: a SIGTERM finishes the upload and exits 0; a second exits 1 at once, entry kept', async (t) => {
  const { server, tokenFile, queueDir } = await setUp(t);
  const nix = await createNixEnv(t);
  const [finished, abandoned] = await Promise.all([
    buildBigPath(nix, 'sigterm-finished', 4 * 1024 * 1024),
    buildBigPath(nix, 'sigterm-abandoned', 4 * 1024 * 1024),
  ]);
  const proxy = await startCacheProxy(t, server.url);
  const args = ['push-daemon', `${proxy.url}/main`, '--queue', queueDir, '--token-file', tokenFile];

  // One SIGTERM while the upload is held: the daemon waits for it, then stops cleanly.
  await runCliOk(['queue-push', '--queue', queueDir, finished]);
  let held = proxy.holdUploads();
  const first = startCliDaemon(t, args, nix.env);
  assert.equal(await held, hashPart(finished));
  first.signal('SIGTERM');
  await first.waitFor(/^SIGTERM: finishing the batch being pushed/m);
  const early = await Promise.race([first.exited, sleep(1000).then(() => undefined)]);
  assert.equal(early, undefined, `still running a second after SIGTERM while its upload is held:\n${first.output()}`);
  proxy.releaseUploads();
  assert.deepEqual(await first.exited, { code: 0, signal: null }, first.output());
  assert.match(first.output(), /^pushed \/nix\/store\/\S+-sigterm-finished-big \(4\.0 MiB/m);
  assert.deepEqual(await queued(queueDir), [], 'the finished entry is gone');
  assert.equal((await getNarinfo(`${server.url}/main`, finished)).status, 200);

  // Two SIGTERMs: the second does not wait for the held upload, and the entry stays.
  await runCliOk(['queue-push', '--queue', queueDir, abandoned]);
  const [entry] = await queued(queueDir);
  held = proxy.holdUploads();
  const second = startCliDaemon(t, args, nix.env);
  assert.equal(await held, hashPart(abandoned));
  second.signal('SIGTERM');
  await second.waitFor(/^SIGTERM: finishing the batch being pushed/m);
  second.signal('SIGTERM');
  assert.deepEqual(await second.exited, { code: 1, signal: null }, second.output());
  assert.match(second.output(), /^SIGTERM: stopping now$/m);
  assert.deepEqual(await queued(queueDir), [entry]);
  assert.equal((await getNarinfo(`${server.url}/main`, abandoned)).status, 404);
});

test('push-daemon drops a collected path, and retries a 401 entry (every --max-backoff) until taken', async (t) => {
  const { server, tokenFile, queueDir } = await setUp(t);
  const nix = await createNixEnv(t);
  const closure = await buildClosure(nix, 'unauthorized');
  const dir = join(nix.workDir, 'collected');
  await mkdir(dir);
  await writeFile(join(dir, 'content'), `${closure.nonce}\n`);
  const collected = (await nix.run('nix', ['store', 'add-path', dir, '--name', 'collected'])).stdout.trim();
  await runCliOk(['queue-push', '--queue', queueDir, collected]);
  await nix.run('nix-store', ['--delete', collected]);
  await runCliOk(['queue-push', '--queue', queueDir, closure.top]);
  const [collectedEntry, entry] = await queued(queueDir);

  const proxy = await startCacheProxy(t, server.url);
  proxy.refuse({
    method: 'PUT',
    urlIncludes: hashPart(closure.paths[0]!),
    times: 3,
    status: 401,
    code: 'UNAUTHORIZED',
    message: 'the token is not valid (yet)',
  });
  const daemon = startCliDaemon(
    t,
    [
      'push-daemon',
      `${proxy.url}/main`,
      '--queue',
      queueDir,
      '--token-file',
      tokenFile,
      '--retries',
      '0',
      '--max-backoff',
      '1s',
    ],
    nix.env,
  );
  await queueDrained(queueDir);
  const out = daemon.output();
  assert.match(out, new RegExp(`^skipping ${literal(collected)}: no longer in the store \\(collected\\?\\)$`, 'm'));
  const waits = [
    ...out.matchAll(
      new RegExp(
        `^keeping ${literal(entry!)} \\(attempt (\\d) failed: ${literal(closure.paths[0]!)}: HTTP 401 ` +
          `UNAUTHORIZED.*\\); trying again in ([\\d.]+) s$`,
        'gm',
      ),
    ),
  ];
  assert.deepEqual(
    waits.map((m) => m[1]),
    ['1', '2', '3'],
    out,
  );
  for (const m of waits) assert.ok(Number(m[2]) <= 1, `waits at most 1 s: ${m[0]}`);
  assert.equal(proxy.refused(), 3);
  for (const p of closure.paths) assert.equal((await getNarinfo(`${server.url}/main`, p)).status, 200, p);
  assert.equal((await getNarinfo(`${server.url}/main`, collected)).status, 404);
  assert.deepEqual(await readdir(queueDir).then((n) => n.filter((x) => x === collectedEntry)), []);
  await assert.rejects(readdir(join(queueDir, 'failed')), { code: 'ENOENT' }, 'nothing moved to failed/');
});
