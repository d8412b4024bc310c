// Tokens and private caches as the real Nix client sees them (netrc, Basic auth).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { basicAuth, bearerAuth, getNarinfo } from '../helpers/http.js';
import { buildClosure, createNixEnv } from '../helpers/nix.js';
import { lines, uploadClosure } from '../helpers/scenario.js';
import { makeTempDir } from '../helpers/tmp.js';
import { cacheInfo, createToken, runCli, runCliOk, startServer } from '../helpers/server.js';

const HOST = '127.0.0.1';

test('uploads need a write token: none or read-only fails and leaves nothing, write works', async (t) => {
  const server = await startServer(t);
  const cacheUrl = `${server.url}/main`;
  const builder = await createNixEnv(t);
  const closure = await buildClosure(builder, 'auth-upload');
  const target = `${cacheUrl}?compression=zstd`;

  const assertAbsent = async (why: string) => {
    for (const p of closure.paths) {
      const got = await getNarinfo(cacheUrl, p);
      assert.equal(got.status, 404, `${why}: ${p} must not be visible (got ${got.status} ${got.body})`);
    }
  };

  // No credentials at all.
  const anon = await createNixEnv(t);
  const noCreds = await anon.tryRun('nix', ['copy', '--to', target, closure.top]);
  assert.notEqual(noCreds.code, 0, `upload without credentials must fail:\n${noCreds.stderr}`);
  assert.match(noCreds.stderr, /HTTP error 40[13]/, 'anonymous: refused for lack of rights');
  await assertAbsent('after an anonymous upload');

  // A wrong token.
  const wrong = await createNixEnv(t, { netrc: [{ host: HOST, password: 'not-a-real-token' }] });
  const wrongRes = await wrong.tryRun('nix', ['copy', '--to', target, closure.top]);
  assert.notEqual(wrongRes.code, 0, `upload with a bogus token must fail:\n${wrongRes.stderr}`);
  assert.match(wrongRes.stderr, /HTTP error 40[13]/, 'bogus token: refused for lack of rights');
  await assertAbsent('after an upload with a bogus token');

  // A read-only token.
  const { token: readToken } = await createToken(server.dataDir, 'main', 'read');
  const reader = await createNixEnv(t, { netrc: [{ host: HOST, password: readToken }] });
  const readRes = await reader.tryRun('nix', ['copy', '--to', target, closure.top]);
  assert.notEqual(readRes.code, 0, `upload with a read token must fail:\n${readRes.stderr}`);
  assert.match(readRes.stderr, /HTTP error 40[13]/, 'read token: refused for lack of rights');
  await assertAbsent('after an upload with a read token');

  // A write token.
  const { token: writeToken } = await createToken(server.dataDir, 'main', 'write');
  const writer = await createNixEnv(t, { netrc: [{ host: HOST, password: writeToken }] });
  await writer.run('nix', ['copy', '--to', target, closure.top]);
  for (const p of closure.paths) {
    assert.equal((await getNarinfo(cacheUrl, p)).status, 200, `${p} after the authorised upload`);
  }

  // The public cache stays readable by anyone.
  const fresh = await createNixEnv(t);
  const listed = await fresh.run('nix', ['path-info', '--store', cacheUrl, '-r', closure.top]);
  assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
});

test('a private cache is readable only with a valid read token, and not after revocation', async (t) => {
  const server = await startServer(t);
  await runCliOk(['cache', 'create', 'priv', '--private'], { dataDir: server.dataDir });
  const info = await cacheInfo(server.dataDir, 'priv');
  assert.equal(info.private, true);
  const privKey = info.publicKeys[0];
  assert.ok(privKey, `priv has no public key: ${JSON.stringify(info)}`);

  const { cacheUrl, closure } = await uploadClosure(t, 'auth-private', { server, cache: 'priv' });
  const top = closure.top;

  // Anonymous HTTP: 401 with a Basic challenge, for nix-cache-info and narinfos alike.
  const anonInfo = await fetch(`${cacheUrl}/nix-cache-info`);
  assert.equal(anonInfo.status, 401);
  assert.match(anonInfo.headers.get('www-authenticate') ?? '', /^Basic\b/i);
  assert.equal((await getNarinfo(cacheUrl, top)).status, 401);
  assert.equal((await getNarinfo(cacheUrl, top, basicAuth('bogus'))).status, 401);

  // Anonymous Nix client: cannot substitute.
  const anon = await createNixEnv(t, { trustedPublicKeys: [privKey] });
  const anonStore = anon.freshPath('client-store');
  const anonRes = await anon.tryRun('nix', ['copy', '--from', cacheUrl, '--to', anonStore, top]);
  assert.notEqual(anonRes.code, 0, `anonymous copy from a private cache must fail:\n${anonRes.stderr}`);
  assert.equal(existsSync(join(anonStore, top)), false);

  // A read token (in netrc) makes it readable.
  const read = await createToken(server.dataDir, 'priv', 'read', ['--name', 'e2e-reader']);
  assert.equal((await getNarinfo(cacheUrl, top, basicAuth(read.token))).status, 200);
  assert.equal((await getNarinfo(cacheUrl, top, bearerAuth(read.token))).status, 200);
  const withToken = await createNixEnv(t, {
    trustedPublicKeys: [privKey],
    netrc: [{ host: HOST, password: read.token }],
  });
  const store = withToken.freshPath('client-store');
  await withToken.run('nix', ['copy', '--from', cacheUrl, '--to', store, top]);
  const listed = await withToken.run('nix', ['path-info', '--store', store, '-r', top]);
  assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
  assert.equal(readFileSync(join(store, top, 'data'), 'utf8'), `top-${closure.nonce}\n`);

  // The token is listed, then revoked.
  const listing = await runCliOk(['token', 'list', '--json'], { dataDir: server.dataDir });
  assert.ok(listing.stdout.includes(read.id), `token list does not show ${read.id}:\n${listing.stdout}`);
  assert.ok(!listing.stdout.includes(read.token), 'token list must not print token secrets');
  await runCliOk(['token', 'revoke', read.id], { dataDir: server.dataDir });

  const revoked = await getNarinfo(cacheUrl, top, basicAuth(read.token));
  assert.equal(revoked.status, 401, 'a revoked token must no longer read');
  const after = await createNixEnv(t, {
    trustedPublicKeys: [privKey],
    netrc: [{ host: HOST, password: read.token }],
  });
  const store2 = after.freshPath('client-store');
  const afterRes = await after.tryRun('nix', ['copy', '--from', cacheUrl, '--to', store2, top]);
  assert.notEqual(afterRes.code, 0, `copy with a revoked token must fail:\n${afterRes.stderr}`);
  assert.equal(existsSync(join(store2, top)), false);
});

test('a read token for one cache does not open another private cache', async (t) => {
  const server = await startServer(t);
  for (const name of ['priva', 'privb']) {
    await runCliOk(['cache', 'create', name, '--private'], { dataDir: server.dataDir });
  }
  const a = await createToken(server.dataDir, 'priva', 'read');
  const b = await createToken(server.dataDir, 'privb', 'read');
  const aInfo = await fetch(`${server.url}/priva/nix-cache-info`, { headers: basicAuth(a.token) });
  assert.equal(aInfo.status, 200);
  assert.match(await aInfo.text(), /StoreDir: \/nix\/store/);
  const cross = await fetch(`${server.url}/privb/nix-cache-info`, { headers: basicAuth(a.token) });
  assert.ok(cross.status === 401 || cross.status === 403, `priva's token on privb gave ${cross.status}`);
  assert.equal((await fetch(`${server.url}/privb/nix-cache-info`, { headers: basicAuth(b.token) })).status, 200);
});

test('admin CLI usage errors exit 2', async (t) => {
  const dataDir = await makeTempDir(t, 'narhub-data-');
  const res = await runCli(['token', 'create', '--cache', 'main', '--perm', 'bogus-permission'], { dataDir });
  assert.equal(res.code, 2, `stdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
});
