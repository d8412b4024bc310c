// A private cache the caller may not read answers exactly like a cache that does not exist, on
// every route and for every kind of caller, so private cache names cannot be probed (issue 18,
// bug 10). Only a token that would cover a cache of that name learns that there is none.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { basic, bearer, buildTestApp, makePath, randomHashPart, upload } from '../../helpers/build-app.js';

test('a private cache and an unknown one answer alike: status, headers and body, on every route', async (t) => {
  const h = await buildTestApp(t, {
    caches: [
      { name: 'hidden', private: true },
      { name: 'other', private: true },
    ],
  });
  const path = makePath();
  await upload(h, path, { cache: 'hidden' });
  const revoked = h.token('hidden', 'read');
  h.service.tokens.revoke(revoked.id);
  const callers: [string, Record<string, string>][] = [
    ['no token', {}],
    ["another cache's admin token", bearer(h.tokensFor.other!.admin)],
    ["main's write token", basic(h.tokens.write)],
    ['an unknown token', basic('nh_nope')],
    ['a revoked token of the cache', basic(revoked.token)],
  ];
  const requests: [method: 'GET' | 'HEAD' | 'PUT' | 'POST', url: (cache: string) => string, body?: string][] = [
    ['GET', (c) => `/${c}/nix-cache-info`],
    ['HEAD', (c) => `/${c}/nix-cache-info`],
    ['GET', (c) => `/${c}/${path.hashPart}.narinfo`],
    ['HEAD', (c) => `/${c}/${path.hashPart}.narinfo`],
    ['GET', (c) => `/${c}/${randomHashPart()}.narinfo`],
    ['GET', (c) => `/${c}/${path.narUrl}`],
    ['GET', (c) => `/${c}/log/${randomHashPart()}-x.drv`],
    ['PUT', (c) => `/${c}/${path.hashPart}.narinfo`, path.narinfo()],
    ['PUT', (c) => `/${c}/${path.narUrl}`, 'x'],
    ['PUT', (c) => `/${c}/log/${randomHashPart()}-x.drv`, 'log'],
    ['POST', (c) => `/api/v1/caches/${c}/missing-paths`, JSON.stringify({ storePaths: [path.storePath] })],
    ['PUT', (c) => `/api/v1/caches/${c}/paths/${path.hashPart}`, '{}\n'],
  ];
  for (const [who, auth] of callers) {
    for (const [method, url, body] of requests) {
      const ask = (cache: string) =>
        h.request(method, url(cache), {
          headers: { ...auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body }),
        });
      const [hidden, missing] = [await ask('hidden'), await ask('absent')];
      const what = `${who}: ${method} ${url('…')}`;
      assert.equal(hidden.statusCode, 401, `${what} → ${hidden.statusCode} ${hidden.body}`);
      assert.equal(missing.statusCode, hidden.statusCode, what);
      const { date: _a, ...hiddenHeaders } = hidden.headers;
      const { date: _b, ...missingHeaders } = missing.headers;
      assert.deepEqual(missingHeaders, hiddenHeaders, what);
      assert.equal(missing.body.replaceAll('absent', 'hidden'), hidden.body, what);
    }
  }
});

test('a token that would cover a cache of that name is told there is none (404)', async (t) => {
  const h = await buildTestApp(t);
  const everything = h.token('*', 'admin').token;
  const team = h.token('team-*', 'read').token;
  for (const auth of [bearer(everything), bearer(team)]) {
    const res = await h.request('GET', '/team-x/nix-cache-info', { headers: auth });
    assert.equal(res.statusCode, 404, res.body);
    assert.match(res.body, /^CACHE_NOT_FOUND: no cache named team-x\n$/);
  }
  // A public cache's name was never a secret: refusals there say what is missing.
  assert.equal((await h.request('PUT', '/main/nix-cache-info', { body: 'x' })).statusCode, 401);
  assert.equal(
    (await h.request('PUT', '/main/nix-cache-info', { body: 'x', headers: basic(h.tokens.read) })).statusCode,
    403,
  );
});
