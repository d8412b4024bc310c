// The web UI of a narhub that runs no build hub (no Redis): SQLite and local disk only.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildTestApp } from '../../helpers/build-app.js';

/** The cookies a response sets, as one Cookie header (name=value pairs). */
function cookiesOf(res: { headers: Record<string, unknown> }): string {
  const set = res.headers['set-cookie'];
  const all = Array.isArray(set) ? set : set === undefined ? [] : [String(set)];
  return all.map((c: string) => c.split(';')[0]).join('; ');
}

test('without a hub the UI serves caches (private ones to a session) and login, no hub page or link', async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'team', private: true }] });

  const root = await h.request('GET', '/');
  assert.deepEqual([root.statusCode, root.headers.location], [302, '/ui/']);
  const index = await h.request('GET', '/ui/');
  assert.deepEqual([index.statusCode, index.headers.location], [302, '/ui/caches']);

  const anonymous = await h.request('GET', '/ui/caches');
  assert.equal(anonymous.statusCode, 200);
  assert.match(String(anonymous.headers['content-type']), /^text\/html/);
  assert.match(anonymous.body, /href="\/ui\/caches\/main"/);
  assert.doesNotMatch(anonymous.body, /\/ui\/caches\/team/, 'a private cache is not listed without a session');
  assert.doesNotMatch(anonymous.body, /href="\/ui\/(spokes|queues)"|>Projects</, 'no link to a hub page');
  assert.equal((await h.request('GET', '/ui/caches/main')).statusCode, 200);
  assert.equal((await h.request('GET', '/ui/caches/team')).statusCode, 404);
  for (const page of ['/ui/spokes', '/ui/queues', '/ui/projects/web', '/ui/evaluations/1'])
    assert.equal((await h.request('GET', page)).statusCode, 404, page);

  // Log in with a read token of the private cache: a session cookie, and the cache appears.
  const form = await h.request('GET', '/ui/login');
  assert.equal(form.statusCode, 200);
  const csrf = /name="_csrf" value="([^"]+)"/.exec(form.body)?.[1];
  assert.ok(csrf, 'the login form carries a CSRF token');
  const login = await h.request('POST', '/ui/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookiesOf(form) },
    body: new URLSearchParams({ token: h.tokensFor.team!.read, _csrf: csrf }).toString(),
  });
  assert.equal(login.statusCode, 303, login.body);
  const session = cookiesOf(login);
  assert.match(session, /narhub_session=/);
  const loggedIn = await h.request('GET', '/ui/caches', { headers: { cookie: session } });
  assert.match(loggedIn.body, /href="\/ui\/caches\/team"/);
  assert.doesNotMatch(loggedIn.body, new RegExp(h.tokensFor.team!.read), 'no page shows the token');
  assert.equal((await h.request('GET', '/ui/caches/team', { headers: { cookie: session } })).statusCode, 200);
});
