// `narhub serve` as an operator meets it: first start, shutdown, restart on the same data dir.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { getNarinfo } from '../helpers/http.js';
import { createNixEnv } from '../helpers/nix.js';
import { lines, uploadClosure } from '../helpers/scenario.js';
import { jsonLines, runCliOk, startServer } from '../helpers/server.js';
import { seriesValue } from '../helpers/prometheus.js';
import { makeTempDir } from '../helpers/tmp.js';
import { setTimeout as sleep } from 'node:timers/promises';

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

test("caches declared with retention and quota get that GC policy; one without keeps cache update's", async (t) => {
  const policy = async (server: { url: string; adminToken: string }, cache: string) => {
    const res = await runCliOk([
      'cache',
      'info',
      cache,
      '--json',
      '--server',
      server.url,
      '--token',
      server.adminToken,
    ]);
    const info = JSON.parse(res.stdout) as { retention: number | null; quota: number | null };
    return [info.retention, info.quota];
  };
  // The first start makes main (and the admin token); the config then declares it and another.
  const first = await startServer(t);
  assert.deepEqual(await policy(first, 'main'), [null, null], 'no policy by default');
  assert.equal(await first.stop(), 0);
  const config = join(first.dataDir, 'config.json');
  await writeFile(
    config,
    JSON.stringify({ caches: [{ name: 'main', retention: '30d', quota: '500G' }, { name: 'team' }] }),
  );
  const server = await startServer(t, { dataDir: first.dataDir, args: ['--config', config] });
  assert.deepEqual(await policy(server, 'main'), [30 * 86_400, 500 * 1024 ** 3]);
  assert.deepEqual(await policy(server, 'team'), [null, null]);
  await runCliOk([
    'cache',
    'update',
    'team',
    '--retention',
    '7d',
    '--server',
    server.url,
    '--token',
    server.adminToken,
  ]);
  assert.equal(await server.stop(), 0);

  const again = await startServer(t, { dataDir: first.dataDir, args: ['--config', config] });
  assert.deepEqual(await policy(again, 'team'), [7 * 86_400, null], 'the config says nothing of it');
  assert.deepEqual(await policy(again, 'main'), [30 * 86_400, 500 * 1024 ** 3]);
});

test("serve runs GC every gc.interval: each cache's GC runs rise on /metrics, with no request asking", async (t) => {
  const dataDir = await makeTempDir(t, 'narhub-data-');
  const config = join(dataDir, 'config.json');
  await writeFile(config, JSON.stringify({ gc: { interval: '1s' } }));
  const server = await startServer(t, { dataDir, args: ['--config', config] });
  const runs = async () =>
    seriesValue(await (await fetch(`${server.url}/metrics`)).text(), 'narhub_gc_runs{cache="main"}');
  const first = (await runs()) ?? 0;
  let now = first;
  for (let i = 0; i < 100 && now < first + 3; i++) {
    await sleep(200);
    now = (await runs()) ?? 0;
  }
  assert.ok(now >= first + 3, `GC runs went from ${first} to ${now} in 20 s with gc.interval 1s`);
});
