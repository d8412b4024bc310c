// The upstream admin API under /api/v1/caches/:cache/upstreams: TypeBox-validated, admin-only.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatPublicKey, generateKeyPair } from '../../../src/nix/signing.js';
import { basic, bearer, buildTestApp } from '../../helpers/build-app.js';

const key = (name: string) => formatPublicKey(generateKeyPair(name).public);
const json = (body: unknown) => ({
  body: JSON.stringify(body),
  headers: { 'content-type': 'application/json' },
});

test('an admin token of the cache adds, lists and removes its upstreams', async (t) => {
  const h = await buildTestApp(t);
  const admin = bearer(h.tokens.admin);
  const k = key('up-1');
  const added = await h.request('POST', '/api/v1/caches/main/upstreams', {
    ...json({ url: 'https://cache.example.org/', publicKeys: [k], priority: 30 }),
    headers: { ...json({}).headers, ...admin },
  });
  assert.equal(added.statusCode, 200, added.body);
  assert.deepEqual(added.json(), { url: 'https://cache.example.org', publicKeys: [k], priority: 30, declared: false });
  const second = await h.request('POST', '/api/v1/caches/main/upstreams', {
    ...json({ url: 'http://other.example', publicKeys: [k] }),
    headers: { ...json({}).headers, ...admin },
  });
  assert.equal(second.json().priority, 50, 'the default priority');

  const listed = await h.request('GET', '/api/v1/caches/main/upstreams', { headers: admin });
  assert.equal(listed.statusCode, 200);
  assert.deepEqual(
    listed.json().upstreams.map((u: { url: string }) => u.url),
    ['https://cache.example.org', 'http://other.example'],
  );

  const removed = await h.request(
    'DELETE',
    `/api/v1/caches/main/upstreams?url=${encodeURIComponent('https://cache.example.org')}`,
    {
      headers: admin,
    },
  );
  assert.equal(removed.statusCode, 204);
  const again = await h.request('DELETE', '/api/v1/caches/main/upstreams?url=https%3A%2F%2Fcache.example.org', {
    headers: admin,
  });
  assert.equal(again.statusCode, 404);
  assert.deepEqual(again.json(), {
    code: 'UPSTREAM_NOT_FOUND',
    message: 'cache main has no upstream https://cache.example.org',
  });
});

test('the upstream API refuses non-admin tokens and malformed upstreams, with a one-line reason', async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'other' }] });
  const k = key('up-1');
  const post = (body: unknown, auth: Record<string, string>, cache = 'main') =>
    h.request('POST', `/api/v1/caches/${cache}/upstreams`, {
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...auth },
    });
  const good = { url: 'https://cache.example.org', publicKeys: [k] };
  assert.equal((await post(good, {})).statusCode, 401);
  assert.equal((await post(good, basic(h.tokens.write))).statusCode, 403);
  assert.equal((await post(good, basic(h.tokensFor.other!.admin))).statusCode, 403, "another cache's admin");
  assert.equal(
    (await h.request('GET', '/api/v1/caches/main/upstreams', { headers: basic(h.tokens.read) })).statusCode,
    403,
  );

  const admin = basic(h.tokens.admin);
  const cases: [unknown, string, RegExp][] = [
    [{ ...good, publicKeys: ['up-1:short'] }, 'KEY_INVALID', /decodes to|not valid base64/],
    [{ ...good, publicKeys: [] }, 'BAD_REQUEST', /body\.publicKeys/],
    [{ ...good, url: 'file:///srv/cache' }, 'BAD_REQUEST', /not http: or https:/],
    [{ ...good, url: 'https://cache.example.org?x=1' }, 'BAD_REQUEST', /query/],
    [{ ...good, priority: -1 }, 'BAD_REQUEST', /body\.priority/],
    [{ ...good, trusted: true }, 'BAD_REQUEST', /body/],
  ];
  for (const [body, code, message] of cases) {
    const res = await post(body, admin);
    assert.equal(res.statusCode, 400, `${JSON.stringify(body)}: ${res.body}`);
    assert.equal(res.json().code, code);
    assert.match(res.json().message, message);
  }
  assert.deepEqual((await h.request('GET', '/api/v1/caches/main/upstreams', { headers: admin })).json(), {
    upstreams: [],
  });
});
