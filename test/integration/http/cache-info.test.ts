// nix-cache-info, /healthz, and that everything unknown is a real 404.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { basic, buildTestApp } from '../../helpers/build-app.js';

test('GET nix-cache-info: exact body, content type and the cache priority', async (t) => {
  const h = await buildTestApp(t, { mainPriority: 17, caches: [{ name: 'other', priority: 55 }] });
  const res = await h.request('GET', '/main/nix-cache-info');
  assert.equal(res.statusCode, 200);
  assert.equal(res.body, 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 17\n');
  assert.match(res.headers['content-type'] as string, /^text\/x-nix-cache-info\b/);
  assert.equal(res.headers['content-encoding'], undefined);

  const other = await h.request('GET', '/other/nix-cache-info');
  assert.equal(other.statusCode, 200);
  assert.equal(other.body, 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 55\n');
});

test('HEAD nix-cache-info matches GET without a body', async (t) => {
  const h = await buildTestApp(t);
  const get = await h.request('GET', '/main/nix-cache-info');
  const head = await h.request('HEAD', '/main/nix-cache-info');
  assert.equal(head.statusCode, 200);
  assert.equal(head.body, '');
  assert.equal(head.headers['content-type'], get.headers['content-type']);
  assert.equal(head.headers['content-length'], get.headers['content-length']);
  assert.equal(Number(get.headers['content-length']), Buffer.byteLength(get.body));
});

test('PUT nix-cache-info by a writer is accepted and ignored; by nobody it is 401', async (t) => {
  const h = await buildTestApp(t);
  const before = await h.request('GET', '/main/nix-cache-info');

  const anon = await h.request('PUT', '/main/nix-cache-info', {
    body: 'StoreDir: /nix/store\n',
    headers: { 'content-type': 'text/x-nix-cache-info' },
  });
  assert.equal(anon.statusCode, 401);
  assert.match(anon.headers['www-authenticate'] as string, /^Basic\b/);

  const put = await h.request('PUT', '/main/nix-cache-info', {
    body: 'StoreDir: /gnu/store\nPriority: 99\n',
    headers: { ...basic(h.tokens.write), 'content-type': 'text/x-nix-cache-info' },
  });
  assert.ok(
    put.statusCode >= 200 && put.statusCode < 300 && put.statusCode !== 202,
    `PUT → ${put.statusCode} ${put.body}`,
  );

  const after = await h.request('GET', '/main/nix-cache-info');
  assert.equal(after.body, before.body, 'the generated nix-cache-info is not replaced by an upload');
});

test('unknown paths are real 404s with a one-line reason, never 200', async (t) => {
  const h = await buildTestApp(t);
  for (const url of [
    '/main/foo',
    '/main/nar/',
    '/main',
    '/main/',
    '/main/nix-cache-info/',
    '/main/foo.txt',
    '/main/nar/a/b',
    '/main/realisations/',
    '/main/debuginfo/',
    '/main/build-trace-v2/',
    '/healthz/',
  ]) {
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await h.request(method, url);
      assert.equal(res.statusCode, 404, `${method} ${url} → ${res.statusCode} ${res.body}`);
      if (method === 'GET') assert.match(res.body, /^[A-Z_]+: [^\n]+\n$/, `${url} body ${JSON.stringify(res.body)}`);
    }
  }
  // Malformed names under a known route are rejected as such (4xx with a reason), never served.
  for (const url of ['/main/log/', '/main/.narinfo', '/main/abc.narinfo']) {
    const res = await h.request('GET', url);
    assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${url} → ${res.statusCode}`);
    assert.match(res.body, /^[A-Z_]+: [^\n]+\n$/);
  }
  // Under a cache that does not exist: the 401 a private cache gives (private-or-unknown.test.ts).
  for (const url of ['/nope/nix-cache-info', '/nope/00000000000000000000000000000000.narinfo']) {
    const res = await h.request('GET', url);
    assert.equal(res.statusCode, 401, `${url} → ${res.statusCode}`);
    assert.match(res.body, /^UNAUTHORIZED: cache nope does not exist or needs a token with read rights\n$/);
  }
});

test('/healthz answers 200 JSON', async (t) => {
  const h = await buildTestApp(t);
  const res = await h.request('GET', '/healthz');
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'] as string, /^application\/json\b/);
  const body = JSON.parse(res.body) as { status: string; checks: Record<string, string> };
  assert.equal(body.status, 'ok');
  assert.deepEqual(body.checks, { database: 'ok', storage: 'ok' });
});
