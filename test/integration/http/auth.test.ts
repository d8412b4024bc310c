// Tokens as Nix presents them (netrc → Basic, any user name) and as tools do (Bearer), private
// caches, revocation and expiry.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  basic,
  bearer,
  buildTestApp,
  makePath,
  putNar,
  putNarinfo,
  randomHashPart,
  upload,
  type TestApp,
  type TestPath,
} from '../../helpers/build-app.js';

test('Basic auth with any user name, and Bearer, both authorise writes', async (t) => {
  const h = await buildTestApp(t);
  const headers: Record<string, string>[] = [
    basic(h.tokens.write, 'nix'),
    basic(h.tokens.write, 'alice'),
    basic(h.tokens.write, ''),
    basic(h.tokens.write, 'user@example.org'),
    bearer(h.tokens.write),
    { authorization: `bearer ${h.tokens.write}` },
    { authorization: `BASIC ${Buffer.from(`x:${h.tokens.write}`).toString('base64')}` },
  ];
  for (const auth of headers) {
    const path = makePath();
    const nar = await putNar(h, path, auth);
    assert.equal(nar.statusCode, 204, `${auth.authorization}: ${nar.body}`);
    const info = await putNarinfo(h, path.hashPart, path.narinfo(), auth);
    assert.equal(info.statusCode, 204, `${auth.authorization}: ${info.body}`);
    assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).statusCode, 200);
  }
  // The token must be the password, not the user name.
  const swapped = { authorization: `Basic ${Buffer.from(`${h.tokens.write}:`).toString('base64')}` };
  assert.equal((await putNar(h, makePath(), swapped)).statusCode, 401);
});

test('revoked and expired tokens are refused on writes at once (401)', async (t) => {
  const h = await buildTestApp(t);
  const live = h.token('main', 'write');
  const path = makePath();
  assert.equal((await putNar(h, path, basic(live.token))).statusCode, 204);

  h.service.tokens.revoke(live.id);
  const revoked = await putNarinfo(h, path.hashPart, path.narinfo(), basic(live.token));
  assert.equal(revoked.statusCode, 401, revoked.body);
  assert.match(revoked.headers['www-authenticate'] as string, /^Basic\b/);
  assert.match(revoked.body, /^UNAUTHORIZED: [^\n]+\n$/);
  assert.equal((await putNar(h, makePath(), bearer(live.token))).statusCode, 401);
  assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).statusCode, 404);

  const expired = h.token('main', 'write', { expiresAt: Date.now() - 1000 });
  for (const auth of [basic(expired.token), bearer(expired.token)]) {
    const res = await putNar(h, makePath(), auth);
    assert.equal(res.statusCode, 401, res.body);
    assert.match(res.headers['www-authenticate'] as string, /^Basic\b/);
  }
  const future = h.token('main', 'write', { expiresAt: Date.now() + 3_600_000 });
  assert.equal((await putNar(h, makePath(), basic(future.token))).statusCode, 204);
});

test('cache patterns: a glob token writes to every cache it matches and no other', async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'team-a' }, { name: 'team-b' }] });
  const team = h.token('team-*', 'write');
  for (const cache of ['team-a', 'team-b']) {
    const path = makePath();
    await upload(h, path, { cache, auth: basic(team.token) });
    assert.equal((await h.request('GET', `/${cache}/${path.hashPart}.narinfo`)).statusCode, 200);
  }
  assert.equal((await putNar(h, makePath(), basic(team.token))).statusCode, 403);
  const all = h.token('*', 'write');
  await upload(h, makePath(), { auth: basic(all.token) });
});

/** Every read route of a private cache, with what a committed path gives each. */
async function privateFixture(h: TestApp): Promise<{ path: TestPath; urls: string[] }> {
  const path = makePath({ compression: 'zstd' });
  const auth = basic(h.tokensFor.priv!.write);
  await upload(h, path, { cache: 'priv', auth });
  const drv = `${randomHashPart()}-x.drv`;
  const realisation = `sha256:${'ab'.repeat(32)}!out`;
  const buildId = 'cd'.repeat(20);
  const puts: [string, string][] = [
    [`/priv/log/${drv}`, 'a build log\n'],
    [
      `/priv/realisations/${realisation}.doi`,
      JSON.stringify({ dependentRealisations: {}, id: realisation, outPath: path.basename, signatures: [] }),
    ],
    [`/priv/build-trace-v2/${drv}/out.doi`, JSON.stringify({ outPath: path.basename, signatures: [] })],
    [
      `/priv/debuginfo/${buildId}.debug`,
      JSON.stringify({ archive: `../${path.narUrl}`, member: 'lib/debug/.build-id/cd/x.debug' }),
    ],
  ];
  for (const [url, body] of puts) {
    const res = await h.request('PUT', url, { body, headers: { ...auth, 'content-type': 'application/json' } });
    assert.equal(res.statusCode, 204, `${url}: ${res.body}`);
  }
  return {
    path,
    urls: [
      '/priv/nix-cache-info',
      `/priv/${path.hashPart}.narinfo`,
      `/priv/nar/${path.fileName}`,
      `/priv/${path.hashPart}.ls`,
      ...puts.map(([url]) => url),
    ],
  };
}

test("a private cache: each read route is 401 with no token or another cache's, 200 with a read token", async (t) => {
  const h = await buildTestApp(t, {
    caches: [
      { name: 'priv', private: true },
      { name: 'other', private: true },
    ],
  });
  const { urls } = await privateFixture(h);
  const missing = [`/priv/${randomHashPart()}.narinfo`, `/priv/log/${randomHashPart()}-nope.drv`];
  const revoked = h.token('priv', 'read');
  h.service.tokens.revoke(revoked.id);
  const expired = h.token('priv', 'read', { expiresAt: Date.now() - 1 });

  const denied: [string, Record<string, string>][] = [
    ['no token', {}],
    ["another cache's read token", basic(h.tokensFor.other!.read)],
    ["another cache's admin token", bearer(h.tokensFor.other!.admin)],
    ["main's write token", basic(h.tokens.write)],
    ['an unknown token', basic('nh_nope')],
    ['a revoked read token', basic(revoked.token)],
    ['an expired read token', basic(expired.token)],
  ];
  for (const [who, auth] of denied) {
    for (const url of [...urls, ...missing]) {
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await h.request(method, url, { headers: auth });
        // 401, not 403 or 404: nothing about the cache's contents is revealed, and 2.8 reads it as a miss.
        assert.equal(res.statusCode, 401, `${who}: ${method} ${url} → ${res.statusCode} ${res.body}`);
        assert.match(res.headers['www-authenticate'] as string, /^Basic\b/, `${who}: ${url}`);
      }
    }
  }

  const allowed: [string, Record<string, string>][] = [
    ['read token (Basic)', basic(h.tokensFor.priv!.read, 'alice')],
    ['read token (Bearer)', bearer(h.tokensFor.priv!.read)],
    ['write token', basic(h.tokensFor.priv!.write)],
    ['global read token', basic(h.token('*', 'read').token)],
  ];
  for (const [who, auth] of allowed) {
    for (const url of urls) {
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await h.request(method, url, { headers: auth });
        assert.equal(res.statusCode, 200, `${who}: ${method} ${url} → ${res.statusCode} ${res.body}`);
        assert.match(
          res.headers['cache-control'] as string,
          /^private\b/,
          `${who}: ${url} must not be cached by shared caches`,
        );
      }
    }
    for (const url of missing)
      assert.equal((await h.request('GET', url, { headers: auth })).statusCode, 404, `${who}: ${url}`);
  }
});

test("a private cache refuses writes: its read token gets 403, other caches' tokens 401 (as if absent)", async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'priv', private: true }] });
  const path = makePath();
  assert.equal((await putNar(h, path, basic(h.tokensFor.priv!.read), 'priv')).statusCode, 403);
  assert.equal((await putNar(h, path, basic(h.tokens.write), 'priv')).statusCode, 401);
  assert.equal((await putNar(h, path, {}, 'priv')).statusCode, 401);
});

test('a public cache is readable by anyone, even with a bad, revoked or foreign token', async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'priv', private: true }] });
  const path = makePath({ compression: 'xz' });
  await upload(h, path);
  const revoked = h.token('main', 'read');
  h.service.tokens.revoke(revoked.id);
  const headers: Record<string, string>[] = [
    {},
    basic('nh_not-a-token'),
    basic('hunter2', 'alice'),
    bearer('garbage'),
    { authorization: 'Negotiate abc' },
    { authorization: 'Basic' },
    basic(revoked.token),
    basic(h.token('main', 'read', { expiresAt: Date.now() - 1 }).token),
    basic(h.tokensFor.priv!.read),
  ];
  for (const auth of headers) {
    for (const url of [
      '/main/nix-cache-info',
      `/main/${path.hashPart}.narinfo`,
      `/main/nar/${path.fileName}`,
      `/main/${path.hashPart}.ls`,
    ]) {
      const res = await h.request('GET', url, { headers: auth });
      assert.equal(res.statusCode, 200, `${JSON.stringify(auth)} ${url}: ${res.statusCode} ${res.body}`);
    }
  }
});
