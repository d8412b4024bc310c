import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePublicKey, parseSecretKey, publicKeyOf, formatPublicKey } from '../../../src/nix/signing.js';
import { buildClosure, createNixEnv } from '../../helpers/nix.js';
import { runCli, runCliOk } from '../../helpers/server.js';
import { makeTempDir } from '../../helpers/tmp.js';

test('usage errors print usage to stderr and exit 2', async (t) => {
  const dataDir = await makeTempDir(t);
  const cases: string[][] = [
    [],
    ['frobnicate'],
    ['cache'],
    ['cache', 'create'],
    ['cache', 'create', 'a', 'b'],
    ['cache', 'create', 'x', '--bogus'],
    ['cache', 'create', 'x', '--priority', 'high'],
    ['token', 'create', '--cache', 'main'],
    ['token', 'create', '--cache', 'main', '--perm', 'root'],
    ['token', 'create', '--cache', 'main', '--perm', 'read', '--expires', 'soon'],
    ['token', 'revoke'],
    ['keygen', 'k-1'],
    ['serve', 'extra'],
    ['serve', '--data-dir'],
  ];
  for (const args of cases) {
    const res = await runCli(args, args.includes('--data-dir') ? {} : { dataDir });
    assert.equal(res.code, 2, `narhub ${args.join(' ')} should exit 2, got ${res.code}: ${res.stderr}`);
    assert.equal(res.stdout, '', `narhub ${args.join(' ')} should print nothing on stdout`);
    assert.match(res.stderr, /usage:/, `narhub ${args.join(' ')} should print usage`);
  }
});

test('cache create --retention --quota sets the GC policy at once; a bad value is a usage error', async (t) => {
  const dataDir = await makeTempDir(t);
  await runCliOk(['cache', 'create', 'ci', '--retention', '30d', '--quota', '200G'], { dataDir });
  const info = JSON.parse((await runCliOk(['cache', 'info', 'ci', '--json'], { dataDir })).stdout) as {
    retention: number | null;
    quota: number | null;
  };
  assert.deepEqual([info.retention, info.quota], [30 * 86_400, 200 * 1024 ** 3]);
  await runCliOk(['cache', 'create', 'plain', '--quota', 'none'], { dataDir });
  const plain = JSON.parse((await runCliOk(['cache', 'info', 'plain', '--json'], { dataDir })).stdout) as {
    retention: number | null;
    quota: number | null;
  };
  assert.deepEqual([plain.retention, plain.quota], [null, null]);
  const bad = await runCli(['cache', 'create', 'oops', '--retention', 'forever'], { dataDir });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^narhub: --retention "forever" is not/m);
  const none = await runCli(['cache', 'info', 'oops', '--json'], { dataDir });
  assert.equal(none.code, 1, 'a refused create made no cache');
});

test('cache create, list and info', async (t) => {
  const dataDir = await makeTempDir(t);
  const created = await runCliOk(['cache', 'create', 'team', '--private', '--priority', '30'], { dataDir });
  assert.match(created.stdout, /^team\tteam-1:[A-Za-z0-9+/]{43}=\n$/);

  const info = JSON.parse((await runCliOk(['cache', 'info', 'team', '--json'], { dataDir })).stdout) as Record<
    string,
    unknown
  >;
  assert.equal(info.name, 'team');
  assert.equal(info.private, true);
  assert.equal(info.priority, 30);
  assert.deepEqual(info.publicKeys, [created.stdout.trim().split('\t')[1]]);

  const dup = await runCli(['cache', 'create', 'team'], { dataDir });
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /already exists/);
  const bad = await runCli(['cache', 'create', 'Bad/Name'], { dataDir });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /invalid cache name/);
  const missing = await runCli(['cache', 'info', 'nope', '--json'], { dataDir });
  assert.equal(missing.code, 1);
  assert.equal(missing.stdout, '');

  await runCliOk(['cache', 'create', 'pub'], { dataDir });
  const list = JSON.parse((await runCliOk(['cache', 'list', '--json'], { dataDir })).stdout) as {
    name: string;
    private: boolean;
  }[];
  assert.deepEqual(
    list.map((c) => [c.name, c.private]),
    [
      ['pub', false],
      ['team', true],
    ],
  );

  // The secret key is a file only the owner can read; the database never holds it.
  const key = join(dataDir, 'keys', 'team-1.secret');
  assert.equal((await stat(key)).mode & 0o777, 0o600);
  const secret = parseSecretKey(await readFile(key, 'utf8'));
  assert.equal(formatPublicKey(publicKeyOf(secret)), (info.publicKeys as string[])[0]);
  const db = await readFile(join(dataDir, 'narhub.sqlite'));
  assert.equal(db.includes(Buffer.from((await readFile(key, 'utf8')).split(':')[1]!)), false);
});

test('token create, list and revoke', async (t) => {
  const dataDir = await makeTempDir(t);
  await runCliOk(['cache', 'create', 'main'], { dataDir });
  const plain = await runCliOk(['token', 'create', '--cache', 'main', '--perm', 'write'], { dataDir });
  assert.match(plain.stdout, /^nh_[A-Za-z0-9_-]{43}\n$/);
  const json = JSON.parse(
    (
      await runCliOk(
        ['token', 'create', '--cache', 'team-*', '--perm', 'read', '--name', 'ci', '--expires', '30d', '--json'],
        { dataDir },
      )
    ).stdout,
  ) as { id: string; token: string; expiresAt: string; cache: string; permission: string };
  assert.match(json.token, /^nh_/);
  assert.equal(json.cache, 'team-*');
  assert.equal(json.permission, 'read');
  const days = (Date.parse(json.expiresAt) - Date.now()) / 86_400_000;
  assert.ok(days > 29.9 && days <= 30, `expiry ${json.expiresAt} should be 30 days out`);

  const listed = JSON.parse((await runCliOk(['token', 'list', '--json'], { dataDir })).stdout) as {
    id: string;
    status: string;
  }[];
  assert.equal(listed.length, 2);
  assert.ok(
    listed.every((row) => !JSON.stringify(row).includes('nh_')),
    'token list must never show secrets',
  );

  await runCliOk(['token', 'revoke', json.id], { dataDir });
  const after = JSON.parse((await runCliOk(['token', 'list', '--json'], { dataDir })).stdout) as {
    id: string;
    status: string;
  }[];
  assert.equal(after.find((r) => r.id === json.id)?.status, 'revoked');
  const unknown = await runCli(['token', 'revoke', 'tk000000000000'], { dataDir });
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no token/);

  // Every create says which id to revoke: on stderr, as stdout holds the token alone.
  assert.match(plain.stderr, /^created token tk[0-9a-f]{12}\n$/);
  const plainId = /tk[0-9a-f]{12}/.exec(plain.stderr)![0];
  assert.ok(listed.some((row) => row.id === plainId));

  // Only hashes are stored.
  const db = await readFile(join(dataDir, 'narhub.sqlite'));
  assert.equal(db.includes(Buffer.from(json.token)), false);
  assert.equal(db.includes(Buffer.from(plain.stdout.trim())), false);
});

test('token create refuses an expiry not in the future or absurdly far; token list never breaks', async (t) => {
  const dataDir = await makeTempDir(t);
  await runCliOk(['cache', 'create', 'main'], { dataDir });
  const past = new Date(Date.now() - 86_400_000).toISOString();
  for (const expires of ['0d', '0s', past, '99999999999d', '200y', '9999999-01-01']) {
    const res = await runCli(['token', 'create', '--cache', 'main', '--perm', 'read', '--expires', expires], {
      dataDir,
    });
    assert.equal(res.code, 2, `--expires ${expires} should be a usage error, got ${res.code}: ${res.stderr}`);
    assert.equal(res.stdout, '', `--expires ${expires} printed a token`);
    assert.match(res.stderr, /--expires/, expires);
  }
  // The far end of the range is fine, and the list shows it.
  await runCliOk(['token', 'create', '--cache', 'main', '--perm', 'read', '--expires', '100y'], { dataDir });
  const listed = JSON.parse((await runCliOk(['token', 'list', '--json'], { dataDir })).stdout) as {
    expiresAt: string;
  }[];
  assert.equal(listed.length, 1);
  assert.ok(Date.parse(listed[0]!.expiresAt) > Date.now() + 99 * 365 * 86_400_000);

  // A token written by an older narhub with an expiry no Date can show still lists, and can be revoked.
  const Sqlite = (await import('better-sqlite3')).default;
  const db = new Sqlite(join(dataDir, 'narhub.sqlite'));
  db.prepare('UPDATE tokens SET expires_at = ?').run(99_999_999_999 * 86_400_000);
  db.close();
  const text = await runCliOk(['token', 'list'], { dataDir });
  assert.match(text.stdout, /^tk[0-9a-f]{12}\tread\tmain\tactive\t\n$/);
  const json = JSON.parse((await runCliOk(['token', 'list', '--json'], { dataDir })).stdout) as {
    id: string;
    expiresAt: string;
  }[];
  assert.match(json[0]!.expiresAt, /out of range/);
  await runCliOk(['token', 'revoke', json[0]!.id], { dataDir });
});

test('keys made by narhub keygen load in Nix, and keys made by Nix sign for a narhub cache', async (t) => {
  const dir = await makeTempDir(t);
  const nix = await createNixEnv(t);

  // narhub -> Nix: Nix signs a path with narhub's secret key and verifies it with narhub's public key.
  const sk = join(dir, 'nh.sk');
  const pk = join(dir, 'nh.pk');
  const printed = await runCliOk(['keygen', 'narhub-test-1', '--secret-key-file', sk, '--public-key-file', pk]);
  assert.equal(printed.stdout.trim(), await readFile(pk, 'utf8'));
  assert.equal((await stat(sk)).mode & 0o777, 0o600);
  // An input-addressed path: unlike a content-addressed one, only a signature can vouch for it.
  const path = (await buildClosure(nix, 'keygen')).top;
  const verify = (key: string) =>
    nix.tryRun('nix', ['store', 'verify', '--sigs-needed', '1', '--trusted-public-keys', key, path]);
  assert.notEqual((await verify(await readFile(pk, 'utf8'))).code, 0, 'unsigned path must not verify');
  await nix.run('nix', ['store', 'sign', '-k', sk, path]);
  assert.equal(
    (await verify(await readFile(pk, 'utf8'))).code,
    0,
    'Nix must accept its signature made with a narhub key',
  );
  const other = await runCliOk([
    'keygen',
    'narhub-test-1',
    '--secret-key-file',
    join(dir, 'o.sk'),
    '--public-key-file',
    join(dir, 'o.pk'),
  ]);
  assert.notEqual((await verify(other.stdout.trim())).code, 0, 'a different key of the same name must not verify');

  // Nix -> narhub: a cache declared with a key file from nix-store --generate-binary-cache-key signs with it.
  const nixSk = join(dir, 'nix.sk');
  const nixPk = join(dir, 'nix.pk');
  await nix.run('nix-store', ['--generate-binary-cache-key', 'ours-7', nixSk, nixPk]);
  const dataDir = join(dir, 'data');
  const config = join(dir, 'config.json');
  await writeFile(config, JSON.stringify({ caches: [{ name: 'ours', signingKeyFile: nixSk }] }));
  const created = await runCliOk(['cache', 'list', '--json', '--config', config], { dataDir });
  // Declared caches are created by `serve`; `cache list` alone must not invent them.
  assert.deepEqual(JSON.parse(created.stdout), []);
  assert.deepEqual(parsePublicKey(await readFile(nixPk, 'utf8')).name, 'ours-7');
});
