// The narinfo fast path (src/http/narinfo-fast-path.ts) against the Fastify route it stands in
// for: two real servers over one cache service, one with the fast path and one without, asked the
// same raw HTTP requests; status line, every header line in order (Date aside) and body must be
// byte-identical, and the fast path's counter says which requests it answered itself.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildApp, narinfoFastPathOf } from '../../../src/http/app.js';
import { basic, bearer, makePath, putNarinfo, randomHashPart, upload } from '../../helpers/build-app.js';
import { pair } from '../../helpers/fast-path-pair.js';

test('fast path: a hit (GET and HEAD) is answered by it, byte for byte as the route', async (t) => {
  const p = await pair(t);
  const path = makePath();
  await upload(p.h, path);
  const url = `/main/${path.hashPart}.narinfo`;

  const get = await p.same('GET', url);
  assert.equal(get.statusLine, 'HTTP/1.1 200 OK');
  assert.equal(get.fastPath, true);
  assert.equal(get.body.toString(), (await p.h.request('GET', url)).body);
  assert.deepEqual(get.headers.slice(0, 3), [
    'content-type: text/x-nix-narinfo',
    'cache-control: public, max-age=3600',
    `content-length: ${get.body.length}`,
  ]);

  const head = await p.same('HEAD', url);
  assert.equal(head.fastPath, true);
  assert.equal(head.body.length, 0);
  assert.deepEqual(head.headers, get.headers);

  // A second request is answered again (from the memo now), and HTTP/1.0 gets Connection: close.
  assert.equal((await p.same('GET', url)).fastPath, true);
  const old = await p.same('GET', url, {}, '1.0');
  assert.equal(old.fastPath, true);
  assert.ok(old.headers.includes('Connection: close'));

  // nix-cache-info of a public cache too.
  for (const method of ['GET', 'HEAD']) {
    const info = await p.same(method, '/main/nix-cache-info');
    assert.equal(info.statusLine, 'HTTP/1.1 200 OK');
    assert.equal(info.fastPath, true);
  }
});

test('fast path: a new signature is served at once (the memo is forgotten on writes)', async (t) => {
  const p = await pair(t);
  const path = makePath();
  await upload(p.h, path);
  const url = `/main/${path.hashPart}.narinfo`;
  const before = await p.same('GET', url);
  assert.equal(before.fastPath, true);
  const extra = `other-1:${Buffer.alloc(64, 7).toString('base64')}`;
  const put = await putNarinfo(p.h, path.hashPart, path.narinfo({ sigs: [extra] }), basic(p.h.tokens.write));
  assert.equal(put.statusCode, 204, put.body);
  const after = await p.same('GET', url);
  assert.equal(after.fastPath, true);
  assert.notEqual(after.body.toString(), before.body.toString());
  assert.match(after.body.toString(), new RegExp(`^Sig: ${extra.replace(/[+/]/g, '\\$&')}$`, 'm'));
});

test('fast path: misses, bad names and other URL shapes go to the route', async (t) => {
  const p = await pair(t);
  const path = makePath();
  await upload(p.h, path);

  // A miss is read once per request either way: the route does not read again after the fast path.
  const reads: string[] = [];
  const narinfo = p.h.service.narinfo.bind(p.h.service);
  p.h.service.narinfo = (cache, hashPart) => {
    reads.push(hashPart);
    return narinfo(cache, hashPart);
  };
  const missing = randomHashPart();
  for (const method of ['GET', 'HEAD']) {
    const res = await p.same(method, `/main/${missing}.narinfo`);
    assert.equal(res.statusLine, 'HTTP/1.1 404 Not Found');
    assert.equal(res.fastPath, false);
  }
  assert.deepEqual(reads, [missing, missing, missing, missing], 'one read per request, through either server');
  const urls = [
    '/main/abc.narinfo',
    `/main/${'e'.repeat(32)}.narinfo`,
    `/main/${path.hashPart.toUpperCase()}.narinfo`,
    `/main/${path.hashPart}.narinfo?x=1`,
    `/main/${path.hashPart}.narinfo/`,
    `/main/${path.hashPart}.narinf`,
    `/ma%69n/${path.hashPart}.narinfo`,
    `//main/${path.hashPart}.narinfo`,
    `/nope/${path.hashPart}.narinfo`,
    `/nope/nix-cache-info`,
    `/main/${path.hashPart}.ls`,
    `/main/nar/${path.fileName}`,
  ];
  for (const url of urls) {
    for (const method of ['GET', 'HEAD']) {
      const res = await p.same(method, url);
      assert.equal(res.fastPath, false, `${method} ${url}`);
    }
  }
  assert.match((await p.same('GET', `/main/${'e'.repeat(32)}.narinfo`)).statusLine, / 400 /);
  // Other methods are never the fast path's, even on a narinfo URL.
  assert.equal((await p.same('DELETE', `/main/${path.hashPart}.narinfo`)).fastPath, false);
});

test('fast path: refusals left to the route; tokens that may read are served, revocation seen at once', async (t) => {
  const p = await pair(t);
  const path = makePath();
  await upload(p.h, path, { cache: 'priv' });
  const url = `/priv/${path.hashPart}.narinfo`;

  for (const method of ['GET', 'HEAD']) {
    const anonymous = await p.same(method, url);
    assert.equal(anonymous.statusLine, 'HTTP/1.1 401 Unauthorized');
    assert.equal(anonymous.fastPath, false);
  }
  assert.equal((await p.same('GET', '/priv/nix-cache-info')).fastPath, false);
  assert.match((await p.same('GET', '/priv/nix-cache-info')).statusLine, / 401 /);

  const reader = p.h.token('priv', 'read');
  for (const auth of [basic(reader.token), bearer(reader.token)]) {
    const res = await p.same('GET', url, auth);
    assert.equal(res.statusLine, 'HTTP/1.1 200 OK');
    assert.ok(res.headers.includes('cache-control: private, max-age=3600'));
    assert.equal(res.fastPath, true);
  }
  p.h.service.tokens.revoke(reader.id);
  const revoked = await p.same('GET', url, basic(reader.token));
  assert.equal(revoked.statusLine, 'HTTP/1.1 401 Unauthorized');
  assert.equal(revoked.fastPath, false);

  // A public cache is readable whatever token comes along (even a revoked one), by both alike.
  const pub = makePath();
  await upload(p.h, pub);
  const res = await p.same('GET', `/main/${pub.hashPart}.narinfo`, basic(reader.token));
  assert.equal(res.statusLine, 'HTTP/1.1 200 OK');
  assert.equal(res.fastPath, true);
});

test('fast path: same server settings as Fastify sets; off with logRequests; stops when closing', async (t) => {
  const p = await pair(t);
  for (const key of [
    'keepAliveTimeout',
    'requestTimeout',
    'headersTimeout',
    'timeout',
    'maxRequestsPerSocket',
  ] as const) {
    assert.equal(p.fast.server[key], p.plain.server[key], key);
  }
  const logging = await buildApp({
    service: p.h.service,
    maxNarSize: 1 << 20,
    maxSmallFileSize: 1 << 20,
    logRequests: true,
  });
  t.after(() => logging.close());
  assert.equal(narinfoFastPathOf(logging), undefined);

  const path = makePath();
  await upload(p.h, path);
  const request = { method: 'GET', url: `/main/${path.hashPart}.narinfo`, headers: {} } as never;
  await p.fast.close();
  // Fastify answers 503 while it drains; the fast path must not answer anything meanwhile.
  assert.equal(p.fastPath.handle(request, undefined as never), false);
});
