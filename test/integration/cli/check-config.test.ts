// `narhub check-config FILE [--no-secrets]`: what the NixOS module runs while building the system.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatSecretKey, generateKeyPair } from '../../../src/nix/signing.js';
import { repoRoot } from '../../helpers/repo.js';
import { runCli as runCliWith, type RunCliOptions } from '../../helpers/server.js';
import { makeTempDir } from '../../helpers/tmp.js';

// Generous: these suites spawn many short CLI processes, sometimes on a loaded machine.
const runCli = (args: string[], opts: RunCliOptions = {}) => runCliWith(args, { timeoutMs: 120_000, ...opts });

async function writeConfig(dir: string, config: unknown, name = 'config.json'): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, typeof config === 'string' ? config : JSON.stringify(config));
  return file;
}

/** A config using every key of the schema. */
function everyKey(secrets: string): Record<string, unknown> {
  return {
    dataDir: '/var/lib/narhub',
    listen: '[::]:8443',
    publicUrl: 'https://cache.example.org',
    logLevel: 'warn',
    maxNarSize: 1024 ** 3,
    maxSmallFileSize: 1024 ** 2,
    gc: { pendingGracePeriod: 0, interval: 60, supersededGracePeriod: 86400 },
    caches: [
      {
        name: 'main',
        private: false,
        priority: 40,
        signingKeyFile: join(secrets, 'main.secret'),
        redirectNars: true,
        redirectExpiry: 600,
        recompressToZstd: true,
      },
      { name: 'team', private: true, priority: 10 },
    ],
    storage: {
      type: 's3',
      bucket: 'narhub',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:9000',
      prefix: 'cache/',
      forcePathStyle: true,
      accessKeyIdFile: join(secrets, 'access-key-id'),
      secretAccessKeyFile: join(secrets, 'secret-access-key'),
      sessionTokenFile: join(secrets, 'session-token'),
      partSize: 8 * 1024 ** 2,
      queueSize: 8,
    },
    zstd: { level: 9, workers: 4 },
    hub: {
      enable: true,
      redisUrlFile: join(secrets, 'redis-url'),
      evalTimeout: 300,
      evalMemoryMb: 2048,
      evalWorkers: 2,
      cancelSuperseded: false,
      buildTimeout: 7200,
      maxSilent: 600,
      buildAttempts: 2,
    },
  };
}

test('a valid config prints ok and exits 0; an empty one too', async (t) => {
  const dir = await makeTempDir(t);
  for (const config of [{}, { caches: [{ name: 'main' }] }, everyKey('/nonexistent')]) {
    const res = await runCli(['check-config', await writeConfig(dir, config), '--no-secrets']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, 'ok\n');
    assert.equal(res.stderr, '');
  }
  // --config FILE works as well as the argument.
  const res = await runCli(['check-config', '--config', await writeConfig(dir, {})]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout, 'ok\n');
});

test('a config with gcInterval (old name of gc.interval) passes, warning on stderr; with both it fails', async (t) => {
  const dir = await makeTempDir(t);
  const old = await runCli(['check-config', await writeConfig(dir, { gcInterval: '2h' }), '--no-secrets']);
  assert.equal(old.code, 0, old.stderr);
  assert.equal(old.stdout, 'ok\n');
  assert.equal(
    old.stderr,
    'narhub: warning: config key gcInterval is deprecated: it is gc.interval now (read as such)\n',
  );
  const both = await runCli([
    'check-config',
    await writeConfig(dir, { gcInterval: 60, gc: { interval: 60 } }, 'both.json'),
    '--no-secrets',
  ]);
  assert.equal(both.code, 1);
  assert.match(both.stderr, /gcInterval and gc\.interval are both set/);
});

test('every config the NixOS module produces is accepted', async (t) => {
  // Produced by evaluating nixos/module.nix (test/integration/nixos/module-eval.test.ts keeps
  // this file equal to what the module generates now).
  const dir = await makeTempDir(t);
  const configs = JSON.parse(
    await readFile(join(repoRoot(), 'test', 'fixtures', 'nixos', 'module-configs.json'), 'utf8'),
  ) as Record<string, unknown>;
  assert.deepEqual(Object.keys(configs).sort(), ['external', 'full', 'localHub', 'minimal']);
  for (const [scenario, config] of Object.entries(configs)) {
    const res = await runCli(['check-config', await writeConfig(dir, config, `${scenario}.json`), '--no-secrets']);
    assert.equal(res.code, 0, `${scenario}: ${res.stderr}`);
    assert.equal(res.stdout, 'ok\n');
  }
});

test('unknown keys and bad values fail with the key named on stderr', async (t) => {
  const dir = await makeTempDir(t);
  const cases: [unknown, RegExp][] = [
    [{ maxNarSiz: 1 }, /maxNarSiz/],
    [{ caches: [{ name: 'main', signingKey: 'x' }] }, /caches\.0\.signingKey\b/],
    [{ storage: { type: 's3', bucket: 'narhub', acessKeyIdFile: '/k' } }, /storage\.acessKeyIdFile/],
    [{ storage: { type: 'local', bucket: 'narhub' } }, /storage\.bucket/],
    [{ storage: { type: 'gcs' } }, /storage: unknown type "gcs"/],
    [{ hub: { enable: true, redisURL: 'redis://x' } }, /hub\.redisURL/],
    [{ zstd: { level: 99 } }, /zstd\.level/],
    [{ maxNarSize: 'big' }, /maxNarSize/],
    [{ logLevel: 'loud' }, /logLevel/],
    [{ listen: 'everywhere' }, /listen address "everywhere"/],
    [{ caches: [{ name: 'a' }, { name: 'a' }] }, /cache a is declared twice/],
    ['{ "dataDir": ', /not valid JSON/],
    ['[1, 2]', /must hold a JSON object/],
  ];
  for (const [config, message] of cases) {
    const res = await runCli(['check-config', await writeConfig(dir, config), '--no-secrets']);
    assert.equal(res.code, 1, `${JSON.stringify(config)} should fail: ${res.stdout}${res.stderr}`);
    assert.equal(res.stdout, '');
    assert.match(res.stderr, message);
    assert.match(res.stderr, /^narhub: /);
  }
  const missing = await runCli(['check-config', join(dir, 'nope.json')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read config file/);
});

test('without --no-secrets every secret file must exist and be well-formed, and is never printed', async (t) => {
  const dir = await makeTempDir(t);
  const secrets = join(dir, 'secrets');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(secrets);
  const config = everyKey(secrets);
  const file = await writeConfig(dir, config);

  const none = await runCli(['check-config', file]);
  assert.equal(none.code, 1);
  for (const key of ['caches.0.signingKeyFile', 'hub.redisUrlFile', 'access key id file'])
    assert.ok(none.stderr.includes(key), `${key} in ${none.stderr}`);
  assert.ok(none.stderr.includes(join(secrets, 'main.secret')));
  assert.equal(none.stdout, '');

  const key = formatSecretKey(generateKeyPair('main-1').secret);
  await writeFile(join(secrets, 'main.secret'), `${key}\n`, { mode: 0o600 });
  await writeFile(join(secrets, 'access-key-id'), 'AKIAEXAMPLE\n');
  await writeFile(join(secrets, 'secret-access-key'), 'sentinel-secret-value\n');
  await writeFile(join(secrets, 'session-token'), 'sentinel-session-token\n');
  await writeFile(join(secrets, 'redis-url'), 'redis://:sentinel-redis-password@hub:6379/0\n');
  const ok = await runCli(['check-config', file]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, 'ok\n');

  // A malformed key is reported by key and file, not by content.
  await writeFile(join(secrets, 'main.secret'), 'main-1:c2VudGluZWwtbm90LWEta2V5\n');
  const badKey = await runCli(['check-config', file]);
  assert.equal(badKey.code, 1);
  assert.match(badKey.stderr, /caches\.0\.signingKeyFile: .*main\.secret/);
  assert.ok(!badKey.stderr.includes('c2VudGluZWwtbm90LWEta2V5'), badKey.stderr);
  await writeFile(join(secrets, 'main.secret'), `${key}\n`);

  // An empty secret is as bad as a missing one.
  await writeFile(join(secrets, 'redis-url'), '\n');
  const empty = await runCli(['check-config', file]);
  assert.equal(empty.code, 1);
  assert.match(empty.stderr, /hub\.redisUrlFile: file .* is empty/);

  // Half the S3 key pair is refused.
  const half = structuredClone(config) as { storage: Record<string, unknown>; hub: Record<string, unknown> };
  delete half.storage.secretAccessKeyFile;
  delete half.hub.redisUrlFile;
  const halfRes = await runCli(['check-config', await writeConfig(dir, half, 'half.json')]);
  assert.equal(halfRes.code, 1);
  assert.match(halfRes.stderr, /accessKeyIdFile and storage\.secretAccessKeyFile go together/);

  for (const secret of [
    'sentinel-secret-value',
    'sentinel-session-token',
    'sentinel-redis-password',
    key.split(':')[1]!,
  ]) {
    for (const res of [none, ok, badKey, empty, halfRes])
      assert.ok(!(res.stdout + res.stderr).includes(secret), 'a secret was printed');
  }
});

test('the verdict does not depend on the environment', async (t) => {
  const dir = await makeTempDir(t);
  const file = await writeConfig(dir, { listen: '127.0.0.1:9000' });
  const res = await runCli(['check-config', file], { env: { NARHUB_DATA_DIR: '' } });
  assert.equal(res.code, 0, res.stderr);
  const bogus = await runCli(['check-config', file], { env: { NARHUB_DATA_DIR: join(dir, 'does-not-matter') } });
  assert.equal(bogus.code, 0, bogus.stderr);
});

test('usage errors exit 2', async (t) => {
  const dir = await makeTempDir(t);
  const file = await writeConfig(dir, {});
  for (const args of [
    ['check-config'],
    ['check-config', file, file],
    ['check-config', file, '--config', file],
    ['check-config', file, '--data-dir', dir],
    ['check-config', file, '--listen', '127.0.0.1:1'],
    ['check-config', file, '--secrets'],
  ]) {
    const res = await runCli(args);
    assert.equal(res.code, 2, `narhub ${args.join(' ')}: ${res.stderr}`);
    assert.equal(res.stdout, '');
    assert.match(res.stderr, /usage:/);
  }
});
