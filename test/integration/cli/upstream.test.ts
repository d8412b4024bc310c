// `narhub upstream add|list|remove` on a data directory, and upstreams declared in the config file.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatPublicKey, generateKeyPair } from '../../../src/nix/signing.js';
import { runCli, runCliOk, startServer } from '../../helpers/server.js';
import { makeTempDir } from '../../helpers/tmp.js';

const key = (name: string) => formatPublicKey(generateKeyPair(name).public);

test('upstream add, list (text and JSON) and remove', async (t) => {
  const dataDir = await makeTempDir(t);
  await runCliOk(['cache', 'create', 'main'], { dataDir });
  const nixos = key('cache.nixos.org-1');
  const [k1, k2] = [key('team-1'), key('team-2')];
  const added = await runCliOk(
    ['upstream', 'add', 'main', 'https://cache.nixos.org/', '--public-key', nixos, '--priority', '40'],
    { dataDir },
  );
  assert.equal(added.stdout, `40\thttps://cache.nixos.org\t${nixos}\n`);
  await runCliOk(['upstream', 'add', 'main', 'http://10.0.0.2:8080/team', '--public-key', k1, '--public-key', k2], {
    dataDir,
  });
  const listed = await runCliOk(['upstream', 'list', 'main', '--json'], { dataDir });
  assert.deepEqual(JSON.parse(listed.stdout), [
    { url: 'https://cache.nixos.org', publicKeys: [nixos], priority: 40, declared: false },
    { url: 'http://10.0.0.2:8080/team', publicKeys: [k1, k2], priority: 50, declared: false },
  ]);
  // Adding the same URL again changes it (here: asked first now).
  await runCliOk(['upstream', 'add', 'main', 'http://10.0.0.2:8080/team', '--public-key', k1, '--priority', '10'], {
    dataDir,
  });
  const text = await runCliOk(['upstream', 'list', 'main'], { dataDir });
  assert.equal(text.stdout, `10\thttp://10.0.0.2:8080/team\t${k1}\n40\thttps://cache.nixos.org\t${nixos}\n`);

  await runCliOk(['upstream', 'remove', 'main', 'https://cache.nixos.org'], { dataDir });
  const gone = await runCli(['upstream', 'remove', 'main', 'https://cache.nixos.org'], { dataDir });
  assert.equal(gone.code, 1);
  assert.equal(gone.stderr, 'narhub: cache main has no upstream https://cache.nixos.org\n');
  assert.equal(JSON.parse((await runCliOk(['upstream', 'list', 'main', '--json'], { dataDir })).stdout).length, 1);
});

test('upstream refuses a bad key, URL or priority, and a missing --public-key, saying why', async (t) => {
  const dataDir = await makeTempDir(t);
  await runCliOk(['cache', 'create', 'main'], { dataDir });
  const good = key('up-1');
  const cases: [string[], number, RegExp][] = [
    [['upstream', 'add', 'main', 'https://c.example'], 2, /missing --public-key/],
    [['upstream', 'add', 'main'], 2, /missing URL/],
    [['upstream', 'add', 'main', 'https://c.example', '--public-key', 'nonsense'], 1, /public key is not/],
    [['upstream', 'add', 'main', 'ftp://c.example', '--public-key', good], 1, /not http: or https:/],
    [['upstream', 'add', 'main', 'https://u:p@c.example', '--public-key', good], 1, /must not carry credentials/],
    [['upstream', 'add', 'main', 'https://c.example', '--public-key', good, '--priority=-1'], 2, /negative/],
    [['upstream', 'add', 'nocache', 'https://c.example', '--public-key', good], 1, /no cache named nocache/],
    [['upstream', 'list'], 2, /missing CACHE/],
  ];
  for (const [args, code, message] of cases) {
    const res = await runCli(args, { dataDir });
    assert.equal(res.code, code, `narhub ${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, message);
  }
  assert.deepEqual(JSON.parse((await runCliOk(['upstream', 'list', 'main', '--json'], { dataDir })).stdout), []);
});

test('upstreams declared in the config are set at start, replace earlier ones, and change only there', async (t) => {
  const boot = await startServer(t);
  assert.equal(await boot.stop(), 0);
  const { dataDir } = boot;
  const [a, b] = [key('a-1'), key('b-1')];
  await runCliOk(['upstream', 'add', 'main', 'http://by-hand.example', '--public-key', b], { dataDir });
  const config = join(await makeTempDir(t), 'config.json');
  const declare = async (upstreams: object[]) => {
    await writeFile(config, JSON.stringify({ caches: [{ name: 'main', upstreams }] }));
    const server = await startServer(t, { dataDir, args: ['--config', config] });
    assert.equal(await server.stop(), 0);
  };
  await declare([
    { url: 'http://declared-a.example', publicKeys: [a], priority: 5 },
    { url: 'http://declared-b.example', publicKeys: [b] },
  ]);
  const list = async () =>
    (JSON.parse((await runCliOk(['upstream', 'list', 'main', '--json'], { dataDir })).stdout) as { url: string }[]).map(
      (u) => u.url,
    );
  assert.deepEqual(await list(), ['http://declared-a.example', 'http://by-hand.example', 'http://declared-b.example']);

  const refused = await runCli(['upstream', 'remove', 'main', 'http://declared-a.example'], { dataDir });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /declared in the config file; remove it there/);
  const changed = await runCli(['upstream', 'add', 'main', 'http://declared-a.example', '--public-key', b], {
    dataDir,
  });
  assert.match(changed.stderr, /declared in the config file; change it there/);

  // A later config declares one upstream only: the other declared one goes, the one added by hand stays.
  await declare([{ url: 'http://declared-b.example', publicKeys: [b] }]);
  assert.deepEqual(await list(), ['http://by-hand.example', 'http://declared-b.example']);
});

test('check-config refuses an upstream without keys or with an unknown field', async (t) => {
  const dir = await makeTempDir(t);
  const cases: [object, RegExp][] = [
    [{ url: 'https://c.example', publicKeys: [] }, /caches\.0\.upstreams\.0\.publicKeys/],
    [
      { url: 'https://c.example', publicKeys: [key('x-1')], trusted: true },
      /caches\.0\.upstreams\.0\.trusted: Unexpected property/,
    ],
    [{ publicKeys: [key('x-1')] }, /url/],
    [{ url: 'https://c.example', publicKeys: ['c-1:not-a-key'] }, /caches\.0\.upstreams\.0\.publicKeys\.0/],
    [{ url: 'c.example', publicKeys: [key('x-1')] }, /caches\.0\.upstreams\.0\.url/],
  ];
  for (const [upstream, message] of cases) {
    const file = join(dir, 'config.json');
    await writeFile(file, JSON.stringify({ caches: [{ name: 'main', upstreams: [upstream] }] }));
    const res = await runCli(['check-config', file, '--no-secrets']);
    assert.equal(res.code, 1, res.stdout);
    assert.match(res.stderr, message);
  }
  const file = join(dir, 'ok.json');
  await writeFile(
    file,
    JSON.stringify({
      caches: [{ name: 'main', upstreams: [{ url: 'https://cache.nixos.org', publicKeys: [key('c-1')] }] }],
      upstream: { narinfoTimeout: '3s', negativeTtl: '1m', offerTtl: '7d' },
    }),
  );
  assert.equal((await runCli(['check-config', file, '--no-secrets'])).stdout, 'ok\n');
});
