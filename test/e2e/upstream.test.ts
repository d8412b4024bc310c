// Pull-through caching with the real Nix client on both sides: the upstreams are a directory cache
// that `nix copy --to file://…` wrote (signed with `secret-key-files`) served over HTTP, and a
// second narhub; clients trust narhub's key only.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  buildBigPath,
  buildClosure,
  createNixEnv,
  generateKey,
  hashPart,
  type NixEnv,
  type SigningKey,
} from '../helpers/nix.js';
import { lines, uploadClosure } from '../helpers/scenario.js';
import { runCli, runCliOk, startServer, type RunningServer } from '../helpers/server.js';
import { makeTempDir, type Cleanup } from '../helpers/tmp.js';
import { startS3, type S3Server } from '../helpers/s3.js';
import { serveCacheDirectory, type UpstreamServer } from '../helpers/upstream-server.js';

interface DirectoryUpstream {
  /** Builds paths whose signatures come from `secret-key-files`. */
  builder: NixEnv;
  key: SigningKey;
  dir: string;
  server: UpstreamServer;
  /** `nix copy --to file://DIR` of these paths (and their closures). */
  copy(...paths: string[]): Promise<void>;
}

/** An empty directory cache served over HTTP, and a Nix env that signs what it builds. */
async function directoryUpstream(t: Cleanup): Promise<DirectoryUpstream> {
  const builder = await createNixEnv(t);
  const key = await generateKey(builder, 'upstream-1');
  await appendFile(join(builder.confDir, 'nix.conf'), `secret-key-files = ${key.secretKeyFile}\n`);
  const dir = await makeTempDir(t, 'narhub-file-cache-');
  await writeFile(join(dir, 'nix-cache-info'), 'StoreDir: /nix/store\n');
  const server = await serveCacheDirectory(t, dir);
  return {
    builder,
    key,
    dir,
    server,
    copy: async (...paths) => {
      await builder.run('nix', ['copy', '--to', `file://${dir}?compression=zstd`, ...paths]);
    },
  };
}

/** narhub whose cache `main` pulls through `upstreams` (declared in its config file). */
async function narhubWith(
  t: Cleanup,
  upstreams: { url: string; publicKeys: string[] }[],
  upstream: Record<string, number> = {},
  /** More config for both starts (`storage`). */
  extra: Record<string, unknown> = {},
): Promise<RunningServer & { cacheUrl: string }> {
  // A first start with declared caches creates no admin token: boot once without them.
  const configDir = await makeTempDir(t, 'narhub-config-');
  const bootConfig = join(configDir, 'boot.json');
  await writeFile(bootConfig, JSON.stringify(extra));
  const boot = await startServer(t, { args: ['--config', bootConfig] });
  assert.equal(await boot.stop(), 0);
  const config = join(configDir, 'config.json');
  await writeFile(config, JSON.stringify({ ...extra, caches: [{ name: 'main', upstreams }], upstream }));
  const server = await startServer(t, { dataDir: boot.dataDir, args: ['--config', config] });
  return { ...server, cacheUrl: `${server.url}/main` };
}

async function client(t: Cleanup, server: RunningServer): Promise<{ nix: NixEnv; store: string }> {
  const nix = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  return { nix, store: nix.freshPath('client-store') };
}

function realise(c: { nix: NixEnv; store: string }, cacheUrl: string, path: string) {
  return c.nix.tryRun('nix-store', ['--store', c.store, '-r', path, '--option', 'substituters', cacheUrl]);
}

function narFiles(server: RunningServer): string[] {
  const dir = join(server.dataDir, 'store', 'main', 'nar');
  return existsSync(dir) ? readdirSync(dir) : [];
}

async function missingFrom(server: RunningServer, paths: string[]): Promise<string[]> {
  const res = await fetch(`${server.url}/api/v1/caches/main/missing-paths`, {
    method: 'POST',
    // With a token: anonymous missing-paths requests are rate-limited, and this polls.
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ storePaths: paths }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { missing: string[] }).missing;
}

/** A new write token for `main`. */
async function writeToken(server: RunningServer): Promise<string> {
  const created = await runCliOk(['token', 'create', '--cache', 'main', '--perm', 'write', '--json'], {
    dataDir: server.dataDir,
  });
  return (JSON.parse(created.stdout) as { token: string }).token;
}

async function allCommitted(server: RunningServer, paths: string[]): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await missingFrom(server, paths)).length === 0) return;
    await sleep(50);
  }
  assert.deepEqual(await missingFrom(server, paths), [], 'every path committed');
}

test('Nix substitutes through narhub a closure only a file:// upstream has; then it is served locally', async (t) => {
  const up = await directoryUpstream(t);
  const closure = await buildClosure(up.builder, 'pull-closure');
  await up.copy(closure.top);
  const narhub = await narhubWith(t, []);
  // Added while the server runs, through the CLI on its data directory.
  await runCliOk(['upstream', 'add', 'main', up.server.url, '--public-key', up.key.publicKey], {
    dataDir: narhub.dataDir,
  });

  const first = await client(t, narhub);
  const res = await realise(first, narhub.cacheUrl, closure.top);
  assert.equal(res.code, 0, res.stderr);
  const listed = await first.nix.run('nix-store', ['--store', first.store, '-qR', closure.top]);
  assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
  for (const p of closure.paths) await first.nix.run('nix-store', ['--store', first.store, '--verify-path', p]);
  assert.equal(readFileSync(join(first.store, closure.top, 'data'), 'utf8'), `top-${closure.nonce}\n`);

  // narhub kept the closure, and a second client never reaches the upstream.
  await allCommitted(narhub, closure.paths);
  const asked = up.server.requests.length;
  for (const p of closure.paths) assert.equal(up.server.count(`/${hashPart(p)}.narinfo`), 1);
  assert.equal(up.server.requests.filter((r) => r.startsWith('GET /nar/')).length, 3, 'each NAR downloaded once');
  const second = await client(t, narhub);
  const again = await realise(second, narhub.cacheUrl, closure.top);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(up.server.requests.length, asked, 'the second client was served locally');
});

test('Nix substitutes through narhub from a second narhub, with both signatures on the narinfo', async (t) => {
  // Its own cache name: a signature under one of narhub's own key names (main-1) would be dropped.
  const origin = await startServer(t);
  const { stdout } = await runCliOk(['cache', 'create', 'origin'], { dataDir: origin.dataDir });
  const originKey = stdout.trim().split('\t')[1]!;
  const { closure } = await uploadClosure(t, 'pull-narhub', { server: origin, cache: 'origin' });
  const narhub = await narhubWith(t, [{ url: `${origin.url}/origin`, publicKeys: [originKey] }]);
  const c = await client(t, narhub);
  const res = await realise(c, narhub.cacheUrl, closure.top);
  assert.equal(res.code, 0, res.stderr);
  await allCommitted(narhub, closure.paths);
  const info = await (await fetch(`${narhub.cacheUrl}/${hashPart(closure.top)}.narinfo`)).text();
  const sigs = info.split('\n').filter((l) => l.startsWith('Sig: '));
  assert.equal(sigs.length, 2, info);
  assert.ok(sigs.some((s) => s.startsWith('Sig: main-1:')));
  assert.ok(sigs.some((s) => s.startsWith('Sig: origin-1:')));
  // The origin's signature verifies for a client that trusts the origin only.
  const originClient = await createNixEnv(t, { trustedPublicKeys: [originKey] });
  const store = originClient.freshPath('client-store');
  await originClient.run('nix', ['copy', '--from', narhub.cacheUrl, '--to', store, closure.top]);
});

test("a narinfo not signed by the upstream's trusted key is never served; Nix finds no substitute", async (t) => {
  const up = await directoryUpstream(t);
  const closure = await buildClosure(up.builder, 'pull-wrong-key');
  await up.copy(closure.top);
  const other = await generateKey(up.builder, 'other-1');
  const narhub = await narhubWith(t, [{ url: up.server.url, publicKeys: [other.publicKey] }]);
  const res = await (await fetch(`${narhub.cacheUrl}/${hashPart(closure.top)}.narinfo`)).text();
  assert.match(res, /^NOT_FOUND/);
  const c = await client(t, narhub);
  const realised = await realise(c, narhub.cacheUrl, closure.top);
  assert.notEqual(realised.code, 0);
  assert.equal(existsSync(join(c.store, closure.top)), false);
  assert.deepEqual(await missingFrom(narhub, closure.paths), [...closure.paths]);
});

test('an upstream dying mid-NAR or sending wrong bytes: a broken transfer, nothing stored, then success', async (t) => {
  const up = await directoryUpstream(t);
  const big = await buildBigPath(up.builder, 'pull-break', 4 * 1024 * 1024);
  await up.copy(big);
  const narhub = await narhubWith(t, [{ url: up.server.url, publicKeys: [up.key.publicKey] }]);
  up.server.fault = { kind: 'break-nar', afterBytes: 1024 * 1024 };
  const c = await client(t, narhub);
  const failed = await realise(c, narhub.cacheUrl, big);
  assert.notEqual(failed.code, 0, 'Nix must see the broken transfer');
  assert.match(failed.stderr, /partial file|transfer closed|error/i);
  const valid = await c.nix.tryRun('nix-store', ['--store', c.store, '--check-validity', big]);
  assert.notEqual(valid.code, 0, 'the client store did not take the path');
  assert.deepEqual(await missingFrom(narhub, [big]), [big]);
  assert.ok(up.server.requests.filter((r) => r.startsWith('GET /nar/')).length >= 1, 'the NAR was asked for upstream');

  assert.deepEqual(narFiles(narhub), [], 'no NAR file kept');

  // Bytes that do not match: narhub cuts the transfer before its end, so Nix sees a broken
  // download, not a complete NAR it would only then find to have the wrong hash.
  up.server.fault = { kind: 'corrupt-nar' };
  const corrupt = await realise(c, narhub.cacheUrl, big);
  assert.notEqual(corrupt.code, 0);
  assert.match(corrupt.stderr, /partial file|transfer closed/i, corrupt.stderr);
  assert.deepEqual(narFiles(narhub), [], 'no NAR file kept');

  up.server.fault = undefined;
  const retried = await realise(c, narhub.cacheUrl, big);
  assert.equal(retried.code, 0, retried.stderr);
  await c.nix.run('nix-store', ['--store', c.store, '--verify-path', big]);
  await allCommitted(narhub, [big]);
});

test('an upstream that is down answers Nix with misses, not errors, within the narinfo timeout', async (t) => {
  const up = await directoryUpstream(t);
  const closure = await buildClosure(up.builder, 'pull-down');
  await up.copy(closure.top);
  const narhub = await narhubWith(t, [{ url: up.server.url, publicKeys: [up.key.publicKey] }], { narinfoTimeout: 1 });
  up.server.fault = { kind: 'hang' };
  const started = performance.now();
  const res = await fetch(`${narhub.cacheUrl}/${hashPart(closure.top)}.narinfo`);
  assert.equal(res.status, 404);
  assert.ok(performance.now() - started < 4_000);

  await up.server.stop();
  const c = await client(t, narhub);
  const realised = await realise(c, narhub.cacheUrl, closure.paths[0]!);
  assert.notEqual(realised.code, 0);
  assert.doesNotMatch(realised.stderr, /HTTP error 5\d\d/, 'a miss, not a server error');
});

test('20 Nix clients substituting the same path at once cause one upstream download', async (t) => {
  const up = await directoryUpstream(t);
  const big = await buildBigPath(up.builder, 'pull-twenty', 8 * 1024 * 1024);
  await up.copy(big);
  const narhub = await narhubWith(t, [{ url: up.server.url, publicKeys: [up.key.publicKey] }]);
  // Long enough that the clients all ask while it runs.
  up.server.fault = { kind: 'throttle-nar', bytesPerSecond: 4 * 1024 * 1024 };
  const clients = await Promise.all(Array.from({ length: 20 }, () => client(t, narhub)));
  const results = await Promise.all(clients.map((c) => realise(c, narhub.cacheUrl, big)));
  for (const [i, r] of results.entries()) assert.equal(r.code, 0, `client ${i}: ${r.stderr}`);
  assert.equal(up.server.count(`/${hashPart(big)}.narinfo`), 1);
  assert.equal(up.server.requests.filter((r) => r.startsWith('GET /nar/')).length, 1);
  for (const c of clients.slice(0, 3)) await c.nix.run('nix-store', ['--store', c.store, '--verify-path', big]);
});

test('nix copy --to narhub succeeds when an upstream offers the dependencies, narhub fetching them', async (t) => {
  const up = await directoryUpstream(t);
  const closure = await buildClosure(up.builder, 'pull-push');
  const [leaf, mid, top] = closure.paths as [string, string, string];
  await up.copy(mid);
  const narhub = await narhubWith(t, [{ url: up.server.url, publicKeys: [up.key.publicKey] }]);
  const token = await writeToken(narhub);
  const pusher = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  await pusher.run('nix', ['copy', '--to', narhub.cacheUrl, top]);
  // Nix uploaded top alone (the upstream made leaf and mid look present); narhub fetched them.
  assert.equal(up.server.count(`/${hashPart(top)}.narinfo`), 1);
  assert.deepEqual(await missingFrom(narhub, [leaf, mid, top]), []);
});

test('narhub push skips what an upstream serves: narhub fetches it, Nix substitutes it all', async (t) => {
  const up = await directoryUpstream(t);
  const dep = await buildClosure(up.builder, 'from-upstream');
  await up.copy(dep.top);
  const narhub = await narhubWith(t, [{ url: up.server.url, publicKeys: [up.key.publicKey] }]);
  const token = await writeToken(narhub);
  // Built here, unsigned, referring to the upstream's closure (signed by its key in the store).
  const pusher = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  const expr = join(pusher.workDir, 'own.nix');
  await writeFile(
    expr,
    `derivation { name = "own-${dep.nonce}"; system = builtins.currentSystem; builder = "/bin/sh";
      args = [ "-c" "echo \${builtins.storePath "${dep.top}"} > $out" ]; }`,
  );
  const own = (await pusher.run('nix-build', ['--no-out-link', expr])).stdout.trim();

  const res = await runCli(['push', narhub.cacheUrl, own], { env: pusher.env, timeoutMs: 120_000 });
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /pushed 1 paths .* 0 already there; 3 signed by its upstreams, not uploaded/);
  // narhub fetched the three at the commit of the path referring to them.
  for (const p of dep.paths) assert.equal(up.server.count(`/${hashPart(p)}.narinfo`), 1, p);
  assert.deepEqual(await missingFrom(narhub, [...dep.paths, own]), []);

  const c = await client(t, narhub);
  const got = await realise(c, narhub.cacheUrl, own);
  assert.equal(got.code, 0, got.stderr);

  // A path the upstream's key signs but the upstream does not have is uploaded.
  const lone = await buildClosure(up.builder, 'signed-not-served');
  const again = await runCli(['push', narhub.cacheUrl, lone.top], { env: pusher.env, timeoutMs: 120_000 });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /pushed 3 paths .* 0 already there\n/);
  assert.deepEqual(await missingFrom(narhub, lone.paths), []);
});

/** Keys of the objects in s3rver's bucket (its files `<key>._S3rver_object`). */
function bucketObjects(s3: S3Server): string[] {
  const root = join(s3.dir, s3.bucket);
  if (!existsSync(root)) return [];
  const suffix = '._S3rver_object';
  return readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith(suffix))
    .map((f) => f.slice(0, -suffix.length))
    .sort();
}

test('on S3, Nix substitutes from an upstream; one breaking off mid-NAR leaves no object or upload', async (t) => {
  const up = await directoryUpstream(t);
  // Larger than a part: the ingest uploads it in parts.
  const big = await buildBigPath(up.builder, 'pull-s3', 12 * 1024 * 1024);
  await up.copy(big);
  const s3 = await startS3(t);
  const dataDir = await makeTempDir(t, 'narhub-s3-data-');
  const storage = await s3.storageConfig(dataDir, { prefix: 'pull/', partSize: 5 * 1024 * 1024 });
  const narhub = await narhubWith(t, [{ url: up.server.url, publicKeys: [up.key.publicKey] }], {}, { storage });
  const narObjects = () => bucketObjects(s3).filter((k) => k.startsWith('pull/main/nar/'));

  up.server.fault = { kind: 'break-nar', afterBytes: 7 * 1024 * 1024 };
  const c = await client(t, narhub);
  const failed = await realise(c, narhub.cacheUrl, big);
  assert.notEqual(failed.code, 0, 'Nix must see the broken transfer');
  for (let i = 0; i < 100 && (await s3.pendingUploads()).length > 0; i++) await sleep(50);
  assert.deepEqual(await s3.pendingUploads(), [], 'the multipart upload was aborted');
  assert.deepEqual(narObjects(), [], 'no NAR object');
  assert.deepEqual(await missingFrom(narhub, [big]), [big]);

  up.server.fault = undefined;
  const ok = await realise(c, narhub.cacheUrl, big);
  assert.equal(ok.code, 0, ok.stderr);
  await c.nix.run('nix-store', ['--store', c.store, '--verify-path', big]);
  await allCommitted(narhub, [big]);
  assert.equal(narObjects().length, 1, narObjects().join('\n'));
  assert.ok(bucketObjects(s3).includes(`pull/main/${hashPart(big)}.narinfo`));

  const downloads = up.server.requests.filter((r) => r.startsWith('GET /nar/')).length;
  const second = await client(t, narhub);
  const again = await realise(second, narhub.cacheUrl, big);
  assert.equal(again.code, 0, again.stderr);
  await second.nix.run('nix-store', ['--store', second.store, '--verify-path', big]);
  assert.equal(up.server.requests.filter((r) => r.startsWith('GET /nar/')).length, downloads, 'served from S3');
});
