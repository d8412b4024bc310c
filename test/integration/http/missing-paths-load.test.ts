// missing-paths under load (issue 18, bug 7): thirty concurrent 14.8 MB bodies once ran one
// after another, ~0.33 s each, and narinfo GETs waited up to 7.7 s. Now a request holds at most
// 10 000 paths, is looked up in chunks that yield to the event loop, and callers without a token
// are rate-limited per address before their body is read.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildApp } from '../../../src/http/app.js';
import { MISSING_PATHS_PER_REQUEST } from '../../../src/http/routes/api-v1.js';
import { bearer, buildTestApp, makePath, randomHashPart, upload } from '../../helpers/build-app.js';
import { loopTurnsDuring } from '../../helpers/loop-turns.js';

test('a full missing-paths request lets the event loop turn while it is looked up', async (t) => {
  const h = await buildTestApp(t);
  const present = makePath();
  await upload(h, present);
  const storePaths = Array.from({ length: MISSING_PATHS_PER_REQUEST }, (_, i) =>
    i === 5_000 ? present.storePath : `/nix/store/${randomHashPart()}-p${i}`,
  );
  storePaths.push(storePaths[10]!); // a repeat across chunks is answered once
  storePaths.pop();
  const body = JSON.stringify({ storePaths });
  const { value: res, turns } = await loopTurnsDuring(() =>
    h.request('POST', '/api/v1/caches/main/missing-paths', {
      body,
      headers: { 'content-type': 'application/json' },
    }),
  );
  assert.equal(res.statusCode, 200, res.body);
  const { missing } = JSON.parse(res.body) as { missing: string[] };
  assert.equal(missing.length, MISSING_PATHS_PER_REQUEST - 1);
  assert.ok(!missing.includes(present.storePath));
  assert.deepEqual(
    missing,
    storePaths.filter((p) => p !== present.storePath),
  );
  // Ten chunks of 1 000, each after a turn of the loop.
  assert.ok(turns >= 9, `the loop turned ${turns} times`);
});

test('an entry refused in a later chunk is named by its place in the whole request', async (t) => {
  const h = await buildTestApp(t);
  const storePaths = Array.from({ length: 2_500 }, () => `/nix/store/${randomHashPart()}-x`);
  storePaths[2_345] = '/tmp/not-a-store-path';
  const res = await h.request('POST', '/api/v1/caches/main/missing-paths', {
    body: JSON.stringify({ storePaths }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(res.statusCode, 400, res.body);
  assert.match(JSON.parse(res.body).message, /^storePaths\[2345\]: /);
});

test('callers without a token are rate-limited per address (429, Retry-After), token holders are not', async (t) => {
  const h = await buildTestApp(t);
  const app = await buildApp({
    service: h.service,
    maxNarSize: 1 << 20,
    maxSmallFileSize: 1 << 20,
    limits: { missingPathsPerMinute: 3 },
  });
  t.after(() => app.close());
  const ask = (headers: Record<string, string>, remoteAddress = '192.0.2.1', body = '{"storePaths": []}') =>
    app.inject({
      method: 'POST',
      url: '/api/v1/caches/main/missing-paths',
      remoteAddress,
      headers: { 'content-type': 'application/json', ...headers },
      payload: body,
    });
  for (let i = 0; i < 3; i++) assert.equal((await ask({})).statusCode, 200);
  // Past the limit, refused before the body is even parsed (this one is not JSON).
  const limited = await ask({}, '192.0.2.1', 'not json');
  assert.equal(limited.statusCode, 429, limited.body);
  assert.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After');
  assert.deepEqual(Object.keys(JSON.parse(limited.body)), ['code', 'message']);
  assert.equal(JSON.parse(limited.body).code, 'RATE_LIMITED');
  // A bad token is no token.
  assert.equal((await ask(bearer('nh_unknown'))).statusCode, 429);
  // Another address has its own count; a token holder is not limited at all.
  assert.equal((await ask({}, '192.0.2.2')).statusCode, 200);
  for (let i = 0; i < 10; i++) assert.equal((await ask(bearer(h.tokens.read))).statusCode, 200);
});
