// `narhub push` with the real Nix client's store and the real server.
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startCacheProxy, type CacheProxy } from '../helpers/cache-proxy.js';
import { getNarinfo, verifyNarinfoSig } from '../helpers/http.js';
import { buildClosure, createNixEnv } from '../helpers/nix.js';
import { lines } from '../helpers/scenario.js';
import { createToken, runCli, startServer } from '../helpers/server.js';
import type { Cleanup } from '../helpers/tmp.js';

const PUSH_TIMEOUT_MS = 120_000;

interface PathInfoJson {
  path: string;
  signatures?: string[];
}

test('narhub push: client-compressed zstd frames, stored as sent, signed, substituted; again, nothing', async (t) => {
  const server = await startServer(t);
  // Through a proxy that keeps each upload's body, to compare with what the cache serves.
  const proxy = await startCacheProxy(t, server.url);
  const cacheUrl = `${proxy.url}/main`;
  const { token } = await createToken(server.dataDir, 'main', 'write');
  // The token comes from netrc in $NIX_CONF_DIR, as Nix's own would.
  const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  // mid's NAR (3 MB, several zstd jobs) streams through the codec threads at both ends; the others are small.
  const closure = await buildClosure(nix, 'push', { midBlobBytes: 3_000_000 });

  const res = await runCli(['push', cacheUrl, closure.top], { env: nix.env, timeoutMs: PUSH_TIMEOUT_MS });
  assert.equal(res.code, 0, `push failed:\n${res.stderr}`);
  for (const p of closure.paths)
    assert.match(res.stderr, new RegExp(`^pushed ${p.replace(/[.+]/g, '\\$&')} \\(`, 'm'), res.stderr);
  assert.match(res.stderr, /pushed 3 paths .* 0 already there/);

  // Every path is there, zstd, signed by the cache: as the server says and as Nix reads it. Its
  // NAR file is the zstd frame the client sent, byte for byte: the server compressed nothing.
  for (const p of closure.paths) {
    const got = await getNarinfo(cacheUrl, p);
    assert.equal(got.status, 200, `${p}: ${got.body}`);
    assert.equal(got.narinfo!.get('Compression'), 'zstd');
    assert.ok(verifyNarinfoSig(got.narinfo!, server.publicKey), `main-1 Sig verifies for\n${got.body}`);
    const sent = proxy.uploadBody(p.slice('/nix/store/'.length, '/nix/store/'.length + 32))!;
    const newline = sent.indexOf(0x0a);
    assert.equal((JSON.parse(sent.subarray(0, newline).toString()) as { compression?: string }).compression, 'zstd');
    const file = Buffer.from(await (await fetch(`${server.url}/main/${got.narinfo!.get('URL')}`)).arrayBuffer());
    assert.ok(file.equals(sent.subarray(newline + 1)), `${p}: the stored file is the frame the client sent`);
  }
  const reader = await createNixEnv(t);
  const remote = JSON.parse(
    (await reader.run('nix', ['path-info', '--json', '--store', cacheUrl, '-r', closure.top])).stdout,
  ) as PathInfoJson[];
  assert.deepEqual(remote.map((r) => r.path).sort(), [...closure.paths].sort());
  for (const r of remote)
    assert.ok(
      r.signatures?.some((s) => s.startsWith('main-1:')),
      `${r.path} is signed by main-1`,
    );

  // A second push finds nothing missing.
  const again = await runCli(['push', cacheUrl, closure.top], { env: nix.env, timeoutMs: PUSH_TIMEOUT_MS });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /nothing to push: all 3 paths are already in/);
  assert.doesNotMatch(again.stderr, /^pushed \//m);

  // A fresh store trusting only the cache's key substitutes the closure.
  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', cacheUrl, '--to', store, closure.top]);
  const [leaf, mid, top] = closure.paths as [string, string, string];
  assert.equal(readFileSync(join(store, top, 'data'), 'utf8'), `top-${closure.nonce}\n`);
  assert.equal(readlinkSync(join(store, top, 'mid')), mid);
  assert.equal(readFileSync(join(store, mid, 'leaf-path'), 'utf8'), `${leaf}\n`);
  assert.ok(readFileSync(join(store, mid, 'blob')).equals(readFileSync(join(mid, 'blob'))), 'the 3 MB blob');
  assert.equal(readFileSync(join(store, leaf), 'utf8'), `leaf-${closure.nonce}\n`);
  const listed = await client.run('nix', ['path-info', '--store', store, '-r', top]);
  assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
});

test('narhub push with a bad token exits non-zero and names every path it could not push', async (t) => {
  const server = await startServer(t);
  const cacheUrl = `${server.url}/main`;
  const nix = await createNixEnv(t);
  const closure = await buildClosure(nix, 'push-badtoken');

  const res = await runCli(['push', cacheUrl, closure.top, '--token', 'nh_not-a-real-token'], {
    env: nix.env,
    timeoutMs: PUSH_TIMEOUT_MS,
  });
  assert.equal(res.code, 1, res.stderr);
  assert.match(res.stderr, /could not push 3 paths/);
  const [leaf, mid, top] = closure.paths as [string, string, string];
  assert.match(
    res.stderr,
    new RegExp(
      `^  ${leaf.replace(/[.+]/g, '\\$&')}: HTTP 401 UNAUTHORIZED: the token is unknown, expired or revoked$`,
      'm',
    ),
  );
  assert.match(
    res.stderr,
    new RegExp(
      `^  ${mid.replace(/[.+]/g, '\\$&')}: its reference ${leaf.replace(/[.+]/g, '\\$&')} was not pushed$`,
      'm',
    ),
  );
  assert.match(
    res.stderr,
    new RegExp(
      `^  ${top.replace(/[.+]/g, '\\$&')}: its reference ${mid.replace(/[.+]/g, '\\$&')} was not pushed$`,
      'm',
    ),
  );
  assert.doesNotMatch(res.stderr, /retrying/, '401 is not retried');
  for (const p of closure.paths) assert.equal((await getNarinfo(cacheUrl, p)).status, 404);

  // A read token may ask what is missing but not upload: 403, named, not retried.
  const { token: readToken } = await createToken(server.dataDir, 'main', 'read');
  const ro = await runCli(['push', cacheUrl, leaf], {
    env: { ...nix.env, NARHUB_TOKEN: readToken },
    timeoutMs: PUSH_TIMEOUT_MS,
  });
  assert.equal(ro.code, 1, ro.stderr);
  assert.match(ro.stderr, new RegExp(`^  ${leaf.replace(/[.+]/g, '\\$&')}: HTTP 403 FORBIDDEN: `, 'm'));
});

/** A proxy in front of narhub that answers the first `failures` path uploads with 503 (Retry-After: 0). */
async function flakyProxy(t: Cleanup, target: string, failures: number): Promise<CacheProxy> {
  const proxy = await startCacheProxy(t, target);
  proxy.refuse({
    method: 'PUT',
    urlIncludes: '/api/v1/',
    times: failures,
    status: 503,
    code: 'UNAVAILABLE',
    message: 'temporarily unavailable',
    headers: { 'retry-after': '0' },
  });
  return proxy;
}

test('narhub push retries an upload the server answered with 503', async (t) => {
  const server = await startServer(t);
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const proxy = await flakyProxy(t, server.url, 1);
  const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  const closure = await buildClosure(nix, 'push-retry');

  const res = await runCli(['push', `${proxy.url}/main`, closure.top, '--jobs', '2'], {
    env: nix.env,
    timeoutMs: PUSH_TIMEOUT_MS,
  });
  assert.equal(res.code, 0, res.stderr);
  assert.equal(proxy.refused(), 1);
  assert.match(res.stderr, /^retrying \/nix\/store\/\S+ in [\d.]+ s \(attempt 2 of 5\): HTTP 503 UNAVAILABLE/m);
  for (const p of closure.paths) assert.equal((await getNarinfo(`${server.url}/main`, p)).status, 200, p);

  // With no retries left, the 503 is the reason given.
  const proxy2 = await flakyProxy(t, server.url, 100);
  const other = await buildClosure(nix, 'push-noretry');
  const failed = await runCli(['push', `${proxy2.url}/main`, other.paths[0]!, '--retries', '1'], {
    env: nix.env,
    timeoutMs: PUSH_TIMEOUT_MS,
  });
  assert.equal(failed.code, 1, failed.stderr);
  assert.equal(proxy2.refused(), 2, 'one try and one retry');
  assert.match(failed.stderr, new RegExp(`^  ${other.paths[0]!.replace(/[.+]/g, '\\$&')}: HTTP 503 UNAVAILABLE`, 'm'));
});

test('narhub push refuses bad arguments with usage (exit 2)', async () => {
  const cases: string[][] = [
    ['push'],
    ['push', 'http://127.0.0.1:1/main'],
    ['push', 'ftp://x/main', '/nix/store/x'],
    ['push', 'http://127.0.0.1:1/main', '/nix/store/x', '--jobs', '0'],
    ['push', 'http://127.0.0.1:1/main', '/nix/store/x', '--compression', 'xz'],
    ['push', 'http://127.0.0.1:1/main', '/nix/store/x', '--zstd-level', '20'],
  ];
  for (const args of cases) {
    const res = await runCli(args);
    assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, /usage:/);
  }
});
