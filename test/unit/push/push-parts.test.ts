// The pure parts of `narhub push`: URLs, netrc, `nix path-info --json`, backoff, progress output.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseCacheUrl } from '../../../src/push/cache-url.js';
import { parsePathInfoJson } from '../../../src/push/closure.js';
import { defaultNetrcFiles, netrcCredentials, parseNetrc } from '../../../src/push/netrc.js';
import { formatBytes, lineProgress, ttyProgress } from '../../../src/push/progress.js';
import { withRetries } from '../../../src/io/retry.js';
import { PushFailure, pushRetries } from '../../../src/push/retry.js';

test('cache URLs split into the server base and the cache name', () => {
  assert.deepEqual(parseCacheUrl('http://127.0.0.1:8080/main'), {
    base: 'http://127.0.0.1:8080',
    cache: 'main',
    host: '127.0.0.1',
  });
  assert.deepEqual(parseCacheUrl('https://cache.example.org/narhub/team-a/'), {
    base: 'https://cache.example.org/narhub',
    cache: 'team-a',
    host: 'cache.example.org',
  });
  assert.throws(() => parseCacheUrl('http://127.0.0.1:8080/'), /names no cache/);
  assert.throws(() => parseCacheUrl('s3://bucket/main'), /only http/);
  assert.throws(() => parseCacheUrl('http://h/main?compression=xz'), /no query/);
  assert.throws(() => parseCacheUrl('not a url'), /invalid cache URL/);
});

test('netrc: machine entries, default, comments and macdefs; first file with credentials wins', () => {
  const entries = parseNetrc(
    '# creds\nmachine a.example login u password p1\nmacdef init\ncd /\n\nmachine b password p2 account x\ndefault ' +
      'login d password pd\n',
  );
  assert.deepEqual(entries, [
    { machine: 'a.example', login: 'u', password: 'p1' },
    { machine: 'b', login: undefined, password: 'p2' },
    { machine: undefined, login: 'd', password: 'pd' },
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'narhub-netrc-'));
  try {
    const one = join(dir, 'one');
    const two = join(dir, 'two');
    writeFileSync(one, 'machine other password nope\n');
    writeFileSync(two, 'machine 127.0.0.1 login x password nh_secret\n');
    assert.deepEqual(netrcCredentials('127.0.0.1', [join(dir, 'absent'), one, two]), {
      login: 'x',
      password: 'nh_secret',
      file: two,
    });
    assert.equal(netrcCredentials('elsewhere', [one, two]), undefined);
    assert.throws(() => netrcCredentials('h', [join(dir, 'absent')], true), /cannot read netrc file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(defaultNetrcFiles({ NIX_CONF_DIR: '/c', HOME: '/home/u' }), [
    '/c/netrc',
    '/home/u/.config/nix/netrc',
    '/etc/nix/netrc',
  ]);
  assert.deepEqual(defaultNetrcFiles({ XDG_CONFIG_HOME: '/x', HOME: '/home/u' }), ['/x/nix/netrc', '/etc/nix/netrc']);
});

test('nix path-info --json: the array of Nix 2.8 and the object of later versions, with the ultimate flag', () => {
  const p = '/nix/store/0c5q4bqbzvmh3h69b2xs8lqbrhqf4zyv-foo';
  const d = '/nix/store/1c5q4bqbzvmh3h69b2xs8lqbrhqf4zyv-foo.drv';
  const hash = 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s';
  const old = JSON.stringify([
    {
      path: p,
      narHash: hash,
      narSize: 120,
      references: [p],
      deriver: d,
      signatures: ['k:x'],
      valid: true,
      registrationTime: 1,
      ultimate: true,
    },
  ]);
  assert.deepEqual(parsePathInfoJson(old), [
    {
      path: p,
      narHash: hash,
      narSize: 120,
      references: [p],
      deriver: d,
      ca: undefined,
      signatures: ['k:x'],
      ultimate: true,
    },
  ]);
  const sri = 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=';
  const current = JSON.stringify({
    [p]: {
      narHash: sri,
      narSize: 8,
      references: [],
      deriver: null,
      ca: 'fixed:r:sha256:abc',
      signatures: [],
      ultimate: false,
    },
  });
  assert.deepEqual(parsePathInfoJson(current), [
    {
      path: p,
      narHash: sri,
      narSize: 8,
      references: [],
      deriver: undefined,
      ca: 'fixed:r:sha256:abc',
      signatures: [],
      ultimate: false,
    },
  ]);
  assert.throws(
    () => parsePathInfoJson('[{"path": "/tmp/x", "narHash": "sha256:x", "narSize": 1}]'),
    /invalid store path/,
  );
  assert.throws(() => parsePathInfoJson(`[{"path": "${p}", "valid": false}]`), /not valid/);
});

test('the push client retries only transient PushFailures, up to the limit, waiting at least Retry-After', async () => {
  const waits: number[] = [];
  const policy = pushRetries({ retries: 2, baseMs: 10, sleep: async (ms: number) => void waits.push(ms) });
  let calls = 0;
  await assert.rejects(
    withRetries(async () => {
      calls++;
      throw new PushFailure('HTTP 503', true);
    }, policy),
    /HTTP 503/,
  );
  assert.equal(calls, 3);
  assert.equal(waits.length, 2);

  calls = 0;
  await assert.rejects(
    withRetries(async () => {
      calls++;
      throw new PushFailure('HTTP 400', false);
    }, policy),
    /HTTP 400/,
  );
  assert.equal(calls, 1);

  calls = 0;
  assert.equal(
    await withRetries(async () => (++calls < 2 ? Promise.reject(new PushFailure('reset', true)) : 'ok'), policy),
    'ok',
  );

  waits.length = 0;
  await assert.rejects(
    withRetries(async () => {
      throw new PushFailure('HTTP 429', true, 7);
    }, policy),
    /HTTP 429/,
  );
  assert.ok(
    waits.every((ms) => ms >= 7000),
    `waited ${waits.join(', ')} ms for a Retry-After of 7 s`,
  );
  // Anything else is not the push client's to retry.
  calls = 0;
  await assert.rejects(
    withRetries(async () => {
      calls++;
      throw new Error('bug');
    }, policy),
    /bug/,
  );
  assert.equal(calls, 1);
});

test('progress: plain lines off a terminal, a redrawn bar on one', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(5 * 1024 ** 3), '5.0 GiB');

  let plain = '';
  const lp = lineProgress({ write: (s: string) => (plain += s) });
  lp.start(1, 2048);
  lp.retrying('/nix/store/x', { attempt: 1, of: 5, delayMs: 1500, reason: 'HTTP 503' });
  lp.pushed('/nix/store/x', { narSize: 2048, fileSize: 1024, seconds: 2, stored: true });
  lp.failed('/nix/store/y', 'HTTP 400 NAR_INVALID: bad');
  lp.finish();
  assert.equal(
    plain,
    'retrying /nix/store/x in 1.5 s (attempt 2 of 5): HTTP 503\n' +
      'pushed /nix/store/x (2.0 KiB, 1.0 KiB stored, 2.0 s, 1.0 KiB/s)\n' +
      'failed /nix/store/y: HTTP 400 NAR_INVALID: bad\n',
  );

  let tty = '';
  let clock = 0;
  const tp = ttyProgress({ write: (s: string) => (tty += s), isTTY: true, columns: 100 }, () => clock);
  tp.start(2, 4096);
  tp.bytes(2048);
  clock = 1000;
  tp.pushed('/nix/store/x', { narSize: 2048, fileSize: 100, seconds: 1, stored: true });
  tp.failed('/nix/store/y', 'nope');
  tp.finish();
  assert.match(tty, /\r\x1b\[K\[#{20}\.{20}\] 1\/2 paths, 2\.0 KiB of 4\.0 KiB, 2\.0 KiB\/s/);
  assert.match(tty, /\r\x1b\[Kfailed \/nix\/store\/y: nope\n/);
  assert.match(tty, /, 1 failed\n$/);
});

test('answers and connection failures are classified: 5xx, 429 and refused connections retry, 4xx not', async (t) => {
  const { createServer } = await import('node:http');
  const { createApiClient } = await import('../../../src/push/api-client.js');
  const answers: [number, Record<string, string>, string][] = [
    [503, {}, '{"code":"UNAVAILABLE","message":"temporarily unavailable"}'],
    [429, { 'retry-after': '3' }, 'slow down'],
    [400, { 'content-type': 'application/json' }, '{"code":"STORE_PATH_INVALID","message":"storePaths[0]: bad"}'],
    [200, { 'content-type': 'application/json' }, '{"missing":["/nix/store/x"]}'],
  ];
  let seenAuth: string | undefined;
  const server = createServer((req, res) => {
    seenAuth = req.headers.authorization;
    req.resume();
    const [status, headers, body] = answers.shift()!;
    res.writeHead(status, headers).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;
  const client = createApiClient({ base: `http://127.0.0.1:${port}`, cache: 'main', host: '127.0.0.1' }, 'Bearer nh_x');

  const failure = async (): Promise<PushFailure> => {
    try {
      await client.missingPaths(['/nix/store/x']);
    } catch (err) {
      return err as PushFailure;
    }
    throw new Error('expected a failure');
  };
  const unavailable = await failure();
  assert.equal(unavailable.transient, true);
  assert.equal(unavailable.message, 'HTTP 503 UNAVAILABLE: temporarily unavailable');
  const limited = await failure();
  assert.deepEqual([limited.transient, limited.retryAfter], [true, 3]);
  const bad = await failure();
  assert.equal(bad.transient, false);
  assert.equal(bad.message, 'HTTP 400 STORE_PATH_INVALID: storePaths[0]: bad');
  assert.deepEqual((await client.missingPaths(['/nix/store/x'])).missing, ['/nix/store/x']);
  assert.equal(seenAuth, 'Bearer nh_x');

  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const refused = await failure();
  assert.equal(refused.transient, true);
  assert.match(refused.message, /^connection failed \(ECONNREFUSED/);
});
