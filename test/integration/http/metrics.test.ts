// GET /metrics: Prometheus text format that promtool accepts, counting requests by route pattern
// and status; open on loopback, otherwise only to an admin token over every cache.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { basic, bearer, buildTestApp, makePath, randomHashPart, upload } from '../../helpers/build-app.js';

test('/metrics passes promtool check metrics and counts requests by route pattern and status', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath();
  await upload(h, path);
  for (let i = 0; i < 3; i++) await h.request('GET', `/main/${path.hashPart}.narinfo`);
  await h.request('GET', `/main/${randomHashPart()}.narinfo`);
  await h.request('GET', `/no/such/${randomHashPart()}/thing`);

  const res = await h.request('GET', '/metrics');
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'] as string, /^text\/plain; version=0\.0\.4/);
  // promtool exits non-zero on a malformed exposition (and on lint problems it reports).
  execFileSync('promtool', ['check', 'metrics'], { input: res.body });
  const count = (labels: string) =>
    Number(
      res.body
        .split('\n')
        .find((l) => l.startsWith(`narhub_http_request_duration_seconds_count{${labels}}`))
        ?.split(' ')[1],
    );
  assert.equal(count('method="GET",route="/:cache/:file",status="200"'), 3);
  assert.equal(count('method="GET",route="/:cache/:file",status="404"'), 1);
  assert.equal(count('method="PUT",route="/:cache/:file",status="204"'), 1);
  assert.equal(count('method="GET",route="unmatched",status="404"'), 1);
  // Routes are labelled by pattern: no URL, no hash, ever.
  assert.doesNotMatch(res.body, new RegExp(path.hashPart));
});

test('/metrics from another host needs an admin token over every cache', async (t) => {
  const h = await buildTestApp(t);
  const remote = (headers: Record<string, string> = {}) =>
    h.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '192.0.2.7', headers });
  assert.equal((await remote()).statusCode, 401);
  assert.equal((await remote(basic(h.tokens.admin))).statusCode, 403, 'admin on one cache is not enough');
  assert.equal((await remote(bearer(h.token('*', 'admin').token))).statusCode, 200);
  assert.equal((await h.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '::1' })).statusCode, 200);
});
