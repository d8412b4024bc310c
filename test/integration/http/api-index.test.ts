// GET /api/v1 answers with the API's index; nothing under /api/ ever reaches the cache routes,
// which would answer for a cache named "api" (issue 17: "no cache named api").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { apiRoutesOf } from '../../../src/http/app.js';
import { basic, buildTestApp, randomHashPart } from '../../helpers/build-app.js';

test('GET /api/v1 lists every route of the API and where its OpenAPI document is', async (t) => {
  const h = await buildTestApp(t);
  const res = await h.request('GET', '/api/v1');
  assert.equal(res.statusCode, 200, res.body);
  const index = JSON.parse(res.body) as { name: string; openapi: string; routes: { method: string; path: string }[] };
  assert.equal(index.name, 'narhub');
  assert.equal(index.openapi, '/api/v1/openapi.json');
  assert.deepEqual(
    index.routes,
    apiRoutesOf(h.app).map((r) => ({ method: r.method, path: r.url })),
  );
  assert.ok(index.routes.some((r) => r.method === 'POST' && r.path === '/api/v1/caches/:cache/missing-paths'));
  assert.equal((await h.request('GET', index.openapi)).statusCode, 200);
});

test('unknown paths under /api/ are JSON 404s, never the cache routes, whatever the method or token', async (t) => {
  const h = await buildTestApp(t);
  const hash = randomHashPart();
  const urls = [
    '/api/',
    '/api/v1/',
    '/api/v2',
    '/api/nix-cache-info',
    `/api/${hash}.narinfo`,
    `/api/${hash}.ls`,
    `/api/nar/${'1'.repeat(52)}.nar`,
    `/api/log/${hash}-x.drv`,
    '/api/v1/nothing-here',
    '/api/v1/caches/main/nothing-here',
    '/api/v1/caches/main/missing-paths/extra',
  ];
  for (const url of urls) {
    for (const method of ['GET', 'HEAD', 'PUT', 'POST', 'DELETE'] as const) {
      for (const headers of [{}, basic(h.tokens.admin)]) {
        const res = await h.request(method, url, {
          headers,
          body: method === 'PUT' || method === 'POST' ? 'x' : undefined,
        });
        assert.equal(res.statusCode, 404, `${method} ${url} → ${res.statusCode} ${res.body}`);
        if (method === 'HEAD') continue;
        assert.match(res.headers['content-type'] as string, /^application\/json/, `${method} ${url}`);
        const body = JSON.parse(res.body) as { code: string; message: string };
        assert.equal(body.code, 'NOT_FOUND', `${method} ${url}: ${res.body}`);
        assert.doesNotMatch(body.message, /no cache named|needs a token|CACHE_/, `${method} ${url}: ${res.body}`);
      }
    }
  }
});
