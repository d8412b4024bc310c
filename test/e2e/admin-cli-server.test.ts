// The admin commands with `--server`: each acts on the running server through /api/v1, never on
// the data directory the command line names (an empty one here, which must stay without caches,
// tokens or keys of the server's).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makePath, nativeUploadBody } from '../helpers/build-app.js';
import { runCli, runCliOk, startServer } from '../helpers/server.js';
import { makeTempDir } from '../helpers/tmp.js';

test('cache, token, pin, key and gc with --server change the server; the data directory stays empty', async (t) => {
  const server = await startServer(t);
  const elsewhere = await makeTempDir(t, 'narhub-elsewhere-');
  const remote = (args: string[]) =>
    runCliOk([...args, '--server', server.url, '--token', server.adminToken], { dataDir: elsewhere });
  const json = async <T>(args: string[]) => JSON.parse((await remote([...args, '--json'])).stdout) as T;
  const api = (path: string, token: string) =>
    fetch(`${server.url}/api/v1${path}`, { headers: { authorization: `Bearer ${token}` } });

  // Caches: create, list, update, info, stats.
  const created = await remote(['cache', 'create', 'team', '--private', '--priority', '30']);
  assert.match(created.stdout, /^team\tteam-1:[A-Za-z0-9+/]{43}=\n$/);
  assert.equal((await fetch(`${server.url}/team/nix-cache-info`)).status, 401, 'private on the server');
  const names = (await json<{ name: string }[]>(['cache', 'list'])).map((c) => c.name).sort();
  assert.deepEqual(names, ['main', 'team']);
  await remote(['cache', 'update', 'team', '--public', '--retention', '30d', '--quota', '50G']);
  const info = await json<{ private: boolean; priority: number; retention: number; quota: number }>([
    'cache',
    'info',
    'team',
  ]);
  assert.deepEqual(
    { private: info.private, priority: info.priority, retention: info.retention, quota: info.quota },
    { private: false, priority: 30, retention: 30 * 86_400, quota: 50 * 1024 ** 3 },
  );
  await remote(['cache', 'create', 'ci', '--retention', '7d', '--quota', '1G']);
  const ci = await json<{ retention: number; quota: number }>(['cache', 'info', 'ci']);
  assert.deepEqual([ci.retention, ci.quota], [7 * 86_400, 1024 ** 3], 'cache create --retention --quota on the server');
  const cacheInfo = await fetch(`${server.url}/team/nix-cache-info`);
  assert.equal(cacheInfo.status, 200, 'public without a restart');
  assert.match(await cacheInfo.text(), /^Priority: 30$/m);

  // Tokens: one created remotely works on the server at once, and stops at once when revoked.
  const token = await json<{ id: string; token: string; cache: string; permission: string; status: string }>([
    'token',
    'create',
    '--cache',
    'team',
    '--perm',
    'admin',
    '--name',
    'team-admin',
  ]);
  assert.deepEqual([token.cache, token.permission, token.status], ['team', 'admin', 'active']);
  assert.equal((await api('/caches/team', token.token)).status, 200);
  assert.equal((await api('/caches/main', token.token)).status, 403, 'admin of team only');
  const trigger = await json<{ permission: string; project: string; cache: string }>([
    'token',
    'create',
    '--perm',
    'trigger',
    '--project',
    'web',
  ]);
  assert.deepEqual([trigger.permission, trigger.project, trigger.cache], ['trigger', 'web', '']);
  const listed = await json<{ id: string; name: string | null; status: string }[]>(['token', 'list']);
  assert.deepEqual(
    listed.filter((r) => r.id === token.id).map((r) => [r.name, r.status]),
    [['team-admin', 'active']],
  );
  assert.equal(listed.length, 3, 'the admin token, and the two created here');
  assert.equal((await remote(['token', 'revoke', token.id])).stdout, `revoked ${token.id}\n`);
  assert.equal((await api('/caches/team', token.token)).status, 401, 'revoked on the server');
  const afterRevoke = await json<{ id: string; status: string }[]>(['token', 'list']);
  assert.equal(afterRevoke.find((r) => r.id === token.id)?.status, 'revoked');

  // Pins on a path uploaded to the server.
  const { token: writeToken } = await json<{ token: string }>([
    'token',
    'create',
    '--cache',
    'main',
    '--perm',
    'write',
  ]);
  const p = makePath({ name: 'pinned' });
  const upload = await fetch(`${server.url}/api/v1/caches/main/paths/${p.hashPart}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${writeToken}`, 'content-type': 'application/octet-stream' },
    body: nativeUploadBody(p),
  });
  assert.equal(upload.status, 201, await upload.text());
  await remote(['pin', 'add', 'main', p.storePath, '--name', 'release', '--expires', '30d']);
  const pins = await json<{ name: string; storePath: string; expiresAt: string | null }[]>(['pin', 'list', 'main']);
  assert.deepEqual(
    pins.map((x) => [x.name, x.storePath]),
    [['release', p.storePath]],
  );
  const expires = Date.parse(pins[0]!.expiresAt!) - Date.now();
  assert.ok(expires > 29 * 86_400_000 && expires <= 30 * 86_400_000, `expires in ${expires} ms`);
  await remote(['pin', 'remove', 'main', 'release']);
  assert.deepEqual(await json(['pin', 'list', 'main']), []);

  // Keys and stats.
  await remote(['key', 'rotate', 'main']);
  const keys = await json<{ name: string; state: string }[]>(['key', 'list', 'main']);
  assert.deepEqual(
    keys.map((k) => [k.name, k.state]),
    [
      ['main-1', 'previous'],
      ['main-2', 'active'],
    ],
  );
  const stats = await json<{ paths: number; narinfoHits: number | null }>(['cache', 'stats', 'main']);
  assert.equal(stats.paths, 1);
  assert.equal(typeof stats.narinfoHits, 'number', 'a server knows its reads');
  const text = await remote(['cache', 'stats', 'main']);
  assert.match(text.stdout, /^paths: +1$/m);

  // GC: a dry run over every cache.
  const gc = await json<{ dryRun: boolean; caches: { cache: string }[] }>(['gc', '--dry-run']);
  assert.equal(gc.dryRun, true);
  assert.deepEqual(gc.caches.map((c) => c.cache).sort(), ['ci', 'main', 'team']);

  // Nothing of this reached the local data directory.
  const local = await runCliOk(['cache', 'list', '--json'], { dataDir: elsewhere });
  assert.deepEqual(JSON.parse(local.stdout), []);
});

test('with --server, a refused command exits 1 with the server’s one-line reason', async (t) => {
  const server = await startServer(t);
  const elsewhere = await makeTempDir(t, 'narhub-elsewhere-');
  const noAdmin = await runCli(['cache', 'list', '--server', server.url, '--token', 'nh_not-a-token'], {
    dataDir: elsewhere,
  });
  assert.equal(noAdmin.code, 1, noAdmin.stderr);
  assert.match(noAdmin.stderr, /UNAUTHORIZED/);
  const missing = await runCli(['cache', 'info', 'nope', '--server', server.url, '--token', server.adminToken], {
    dataDir: elsewhere,
  });
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /nope/);
  assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
});
