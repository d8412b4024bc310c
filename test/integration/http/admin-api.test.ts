// The admin API over HTTP (Fastify's inject): who may call it, its date-times, and its tokens.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bearer, buildTestApp, makePath, nativeUploadBody } from '../../helpers/build-app.js';

const json = { 'content-type': 'application/json' };

test('admin API: 401 without a token, 403 for write tokens or cache admins on global routes, reasons', async (t) => {
  const h = await buildTestApp(t);
  const cases: [string, string, Record<string, string>, number][] = [
    ['GET', '/api/v1/caches/main', {}, 401],
    ['GET', '/api/v1/caches/main', bearer(h.tokens.write), 403],
    ['GET', '/api/v1/caches/main', bearer(h.tokens.admin), 200],
    ['GET', '/api/v1/caches', bearer(h.tokens.admin), 403],
    ['GET', '/api/v1/tokens', bearer(h.tokens.admin), 403],
    ['GET', '/api/v1/tokens', {}, 401],
  ];
  for (const [method, url, headers, status] of cases) {
    const res = await h.request(method as 'GET', url, { headers });
    assert.equal(res.statusCode, status, `${method} ${url}: ${res.body}`);
    if (status >= 400) {
      const body = res.json() as { error: string; message: string };
      assert.match(body.message, /^[^\n]+$/, 'one line');
    }
  }
});

test('admin API: an expiry not in RFC 3339 date-time is a 400 naming the field; a valid one is kept', async (t) => {
  const h = await buildTestApp(t);
  const admin = h.token('*', 'admin').token;
  const p = makePath({ name: 'pinned' });
  const up = await h.request('PUT', `/api/v1/caches/main/paths/${p.hashPart}`, {
    headers: { ...bearer(h.tokens.write), 'content-type': 'application/octet-stream' },
    body: nativeUploadBody(p),
  });
  assert.equal(up.statusCode, 201, up.body);

  for (const bad of ['tomorrow', '2030-13-45', '2030-01-01']) {
    const pin = await h.request('POST', '/api/v1/caches/main/pins', {
      headers: { ...bearer(admin), ...json },
      body: JSON.stringify({ storePath: p.storePath, name: 'x', expiresAt: bad }),
    });
    assert.equal(pin.statusCode, 400, `${bad}: ${pin.body}`);
    assert.match((pin.json() as { message: string }).message, /expiresAt/);
    const token = await h.request('POST', '/api/v1/tokens', {
      headers: { ...bearer(admin), ...json },
      body: JSON.stringify({ cache: 'main', permission: 'read', expiresAt: bad }),
    });
    assert.equal(token.statusCode, 400, `${bad}: ${token.body}`);
    assert.match((token.json() as { message: string }).message, /expiresAt/);
  }
  const at = '2030-06-01T12:00:00.000Z';
  const pin = await h.request('POST', '/api/v1/caches/main/pins', {
    headers: { ...bearer(admin), ...json },
    body: JSON.stringify({ storePath: p.storePath, name: 'release', expiresAt: at }),
  });
  assert.equal(pin.statusCode, 201, pin.body);
  assert.equal((pin.json() as { expiresAt: string }).expiresAt, at);
  const token = await h.request('POST', '/api/v1/tokens', {
    headers: { ...bearer(admin), ...json },
    body: JSON.stringify({ cache: 'main', permission: 'read', expiresAt: '2030-06-01T14:00:00+02:00' }),
  });
  assert.equal(token.statusCode, 201, token.body);
  assert.equal((token.json() as { expiresAt: string }).expiresAt, at);
});

test('admin API: a trigger token is made for a project and listed with it, status and never a secret', async (t) => {
  const h = await buildTestApp(t);
  const admin = h.token('*', 'admin').token;
  const made = await h.request('POST', '/api/v1/tokens', {
    headers: { ...bearer(admin), ...json },
    body: JSON.stringify({ permission: 'trigger', project: 'web', name: 'webhook' }),
  });
  assert.equal(made.statusCode, 201, made.body);
  const created = made.json() as { id: string; token: string; project: string; cache: string; status: string };
  assert.deepEqual([created.project, created.cache, created.status], ['web', '', 'active']);
  assert.match(created.token, /^nh_/);
  const noProject = await h.request('POST', '/api/v1/tokens', {
    headers: { ...bearer(admin), ...json },
    body: JSON.stringify({ permission: 'trigger' }),
  });
  assert.equal(noProject.statusCode, 400, noProject.body);
  assert.match((noProject.json() as { message: string }).message, /project/);

  const revoked = await h.request('DELETE', `/api/v1/tokens/${created.id}`, { headers: bearer(admin) });
  assert.equal(revoked.statusCode, 204);
  const list = await h.request('GET', '/api/v1/tokens', { headers: bearer(admin) });
  assert.equal(list.statusCode, 200, list.body);
  const rows = (list.json() as { tokens: { id: string; permission: string; project: string | null; status: string }[] })
    .tokens;
  assert.deepEqual(
    rows.filter((r) => r.id === created.id).map((r) => [r.permission, r.project, r.status]),
    [['trigger', 'web', 'revoked']],
  );
  assert.ok(!list.body.includes(created.token), 'the secret is never listed');
  assert.ok(!list.body.includes('nh_'), 'no secret at all');
});
