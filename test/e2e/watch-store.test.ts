// `narhub watch-store` on the machine's real /nix/store (Nix 2.8, single-user), pushing to a real
// narhub. Other tests add paths to the same store meanwhile: each test names its paths with a
// nonce and lets only those through with --include.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startCliDaemon, type CliDaemon } from '../helpers/cli-daemon.js';
import { waitFor } from '../helpers/hub.js';
import { getNarinfo, verifyNarinfoSig } from '../helpers/http.js';
import { buildClosure, createNixEnv, type NixEnv } from '../helpers/nix.js';
import { createToken, startServer, type RunningServer } from '../helpers/server.js';
import { literal } from '../helpers/scenario.js';
import { makeTempDir, type Cleanup } from '../helpers/tmp.js';

const PUSH_TIMEOUT_MS = 120_000;

/** `nix store add-path` of a fresh directory named `name`; the store path. */
async function addPath(nix: NixEnv, name: string, store?: string): Promise<string> {
  const dir = join(nix.workDir, `${name}-${randomBytes(4).toString('hex')}`);
  await mkdir(dir);
  await writeFile(join(dir, 'content'), `${name} ${randomBytes(8).toString('hex')}\n`);
  const res = await nix.run('nix', ['store', 'add-path', ...(store ? ['--store', store] : []), dir, '--name', name]);
  return res.stdout.trim();
}

async function inCache(server: RunningServer, paths: string[]): Promise<void> {
  for (const p of paths)
    await waitFor(
      `${p} in the cache`,
      async () => (await getNarinfo(`${server.url}/main`, p)).status === 200,
      PUSH_TIMEOUT_MS,
    );
}

async function tokenFile(t: Cleanup, server: RunningServer): Promise<string> {
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const file = join(await makeTempDir(t, 'narhub-watch-token-'), 'token');
  await writeFile(file, token, { mode: 0o600 });
  return file;
}

function watchStore(t: Cleanup, nix: NixEnv, server: RunningServer, args: string[]): CliDaemon {
  return startCliDaemon(t, ['watch-store', `${server.url}/main`, '--interval', '2', ...args], nix.env);
}

test('watch-store pushes new closures, what came while it was killed, and after a server restart', async (t) => {
  const server = await startServer(t);
  const token = await tokenFile(t, server);
  const state = join(await makeTempDir(t, 'narhub-watch-state-'), 'state');
  const nonce = randomBytes(6).toString('hex');
  const nix = await createNixEnv(t);
  const args = ['--state', state, '--token-file', token, '--include', `*${nonce}*`, '--retries', '1'];

  const first = watchStore(t, nix, server, args);
  await first.waitFor(/^watch-store: watching \S+db\.sqlite for new paths/m);
  const added = await addPath(nix, `ws-${nonce}-added`);
  const closure = await buildClosure(nix, `ws-${nonce}`);
  await inCache(server, [added, ...closure.paths]);
  for (const p of [added, ...closure.paths]) {
    const got = await getNarinfo(`${server.url}/main`, p);
    assert.ok(verifyNarinfoSig(got.narinfo!, server.publicKey), `main-1 signs ${p}`);
  }

  // Killed: the path added while it is down is found from its cursor at the next start.
  first.signal('SIGKILL');
  await first.exited;
  const meanwhile = await addPath(nix, `ws-${nonce}-meanwhile`);
  const second = watchStore(t, nix, server, args);
  await second.waitFor(/^watch-store: resuming after Nix's path id \d+$/m);
  await inCache(server, [meanwhile]);

  // The server goes away: the path waits in the queue until it is back on the same address.
  const port = new URL(server.url).port;
  await server.stop();
  const mark = second.output().length;
  const whileDown = await addPath(nix, `ws-${nonce}-server-down`);
  await second.waitFor(
    /^cannot push now \(.*ECONNREFUSED.*\); \d+ queued, trying again in [\d.]+ s$/m,
    PUSH_TIMEOUT_MS,
    mark,
  );
  const restarted = await startServer(t, { dataDir: server.dataDir, args: ['--listen', `127.0.0.1:${port}`] });
  assert.equal(restarted.url, server.url);
  await inCache(restarted, [whileDown]);

  // What a fresh store, trusting only the cache's key, substitutes.
  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', `${server.url}/main`, '--to', store, added, closure.top, whileDown]);
  assert.equal(await readFile(join(store, closure.top, 'data'), 'utf8'), `top-${closure.nonce}\n`);
  assert.match(await readFile(join(store, whileDown, 'content'), 'utf8'), new RegExp(`^ws-${nonce}-server-down `));

  second.signal('SIGTERM');
  assert.deepEqual(await second.exited, { code: 0, signal: null });
});

test('watch-store --only-built-here --exclude: builds only, not copied, hand-added or excluded paths', async (t) => {
  const target = await startServer(t);
  const other = await startServer(t);
  const token = await tokenFile(t, target);
  const { token: otherToken } = await createToken(other.dataDir, 'main', 'write');
  const nonce = randomBytes(6).toString('hex');
  const nix = await createNixEnv(t, {
    netrc: [{ host: '127.0.0.1', password: otherToken }],
    trustedPublicKeys: [other.publicKey],
  });

  // A path made elsewhere (a store of its own) and served, signed, by the other cache.
  const elsewhere = nix.freshPath('elsewhere');
  const substituted = await addPath(nix, `ws-${nonce}-substituted`, elsewhere);
  await nix.run('nix', ['copy', '--from', elsewhere, '--to', `${other.url}/main?compression=zstd`, substituted]);

  const state = join(await makeTempDir(t, 'narhub-watch-state-'), 'state');
  const watcher = watchStore(t, nix, target, [
    '--state',
    state,
    '--token-file',
    token,
    '--include',
    `*${nonce}*`,
    '--exclude',
    '*-excluded',
    '--exclude',
    '*.drv',
    '--only-built-here',
  ]);
  await watcher.waitFor(/^watch-store: watching /m);
  await nix.run('nix', ['copy', '--from', `${other.url}/main`, substituted]);
  const excluded = await addPath(nix, `ws-${nonce}-excluded`);
  const added = await addPath(nix, `ws-${nonce}-added`);
  const built = await buildClosure(nix, `ws-${nonce}-built`);
  await inCache(target, built.paths);
  for (const p of [substituted, added])
    await watcher.waitFor(new RegExp(`^skipping ${literal(p)}: not built here \\(substituted, copied or added`, 'm'));
  await watcher.waitFor(new RegExp(`^skipping ${literal(excluded)}: matches --exclude "\\*-excluded"$`, 'm'));
  await watcher.waitFor(new RegExp(`^skipping ${literal(built.drvs[0]!)}: matches --exclude "\\*\\.drv"$`, 'm'));
  for (const p of [substituted, added, excluded, ...built.drvs])
    assert.equal((await getNarinfo(`${target.url}/main`, p)).status, 404, `${p} is not pushed`);
});
