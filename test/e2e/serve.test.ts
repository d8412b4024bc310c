// `narhub serve` as an operator meets it: first start, shutdown, restart on the same data dir.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { getNarinfo } from '../helpers/http.js';
import { createNixEnv } from '../helpers/nix.js';
import { lines, uploadClosure } from '../helpers/scenario.js';
import { jsonLines, startServer } from '../helpers/server.js';

test('first start prints the substituter URL, public key and admin token, and keeps the token 0600', async (t) => {
  const server = await startServer(t);
  const out = server.stdout();
  const plain = out.split('\n').filter((l) => !l.trim().startsWith('{'));
  assert.ok(
    plain.some((l) => l.includes(`${server.url}/main`)),
    `no substituter URL in:\n${plain.join('\n')}`,
  );
  assert.ok(
    plain.some((l) => l.includes(server.publicKey)),
    `no public key in:\n${plain.join('\n')}`,
  );
  assert.ok(
    plain.some((l) => l.includes(server.adminToken)),
    `no admin token in:\n${plain.join('\n')}`,
  );
  assert.equal(jsonLines(out).filter((r) => r.msg === 'listening').length, 1);
  // Started as npm start and the Nix package start it: nothing to warn about.
  assert.deepEqual(
    jsonLines(out).filter((r) => Number(r.level) >= 40),
    [],
  );
  assert.equal(statSync(join(server.dataDir, 'admin-token')).mode & 0o777, 0o600);

  const info = await fetch(`${server.url}/main/nix-cache-info`);
  assert.equal(info.status, 200);
  assert.match(await info.text(), /^StoreDir: \/nix\/store$/m);
});

test('SIGTERM stops cleanly; a restart on the same data dir keeps key, token and paths', async (t) => {
  const { server, closure } = await uploadClosure(t, 'serve-restart');
  assert.equal(await server.stop(), 0, `exit code after SIGTERM; stdout:\n${server.stdout()}`);
  assert.equal(
    jsonLines(server.stdout()).some((r) => r.level !== undefined && Number(r.level) >= 50),
    false,
    `error-level log lines:\n${server.stdout()}`,
  );

  const again = await startServer(t, { dataDir: server.dataDir });
  assert.equal(again.publicKey, server.publicKey);
  assert.equal(again.adminToken, server.adminToken);
  assert.equal(readFileSync(join(server.dataDir, 'admin-token'), 'utf8').trim(), server.adminToken);

  const cacheUrl = `${again.url}/main`;
  for (const p of closure.paths) assert.equal((await getNarinfo(cacheUrl, p)).status, 200);
  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', cacheUrl, '--to', store, closure.top]);
  const listed = await client.run('nix', ['path-info', '--store', store, '-r', closure.top]);
  assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
});

test("started without narhub's V8 flags, it says which and serves anyway", async (t) => {
  const server = await startServer(t, { nodeFlags: false });
  const warnings = jsonLines(server.stdout()).filter((r) => Number(r.level) === 40);
  assert.equal(warnings.length, 1, server.stdout());
  assert.deepEqual(warnings[0]!.missing, ['--initial-old-space-size=64']);
  assert.match(String(warnings[0]!.msg), /^node was started without --initial-old-space-size=64: /);
  assert.equal((await fetch(`${server.url}/main/nix-cache-info`)).status, 200);
});
