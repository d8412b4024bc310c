// Evaluates nixos/module.nix with the real NixOS module system (lib.evalModules of nixpkgs' lib,
// found at $NIXPKGS_LIB) through eval-module.nix, and checks what the module produces: the
// units' ExecStart, LoadCredential, hardening and environment, the generated JSON config (which
// must pass `narhub check-config`), that no secret reaches a command line, the config or the
// store, and that mistakes are refused.
//
// The one test of the suite allowed to skip: without NIXPKGS_LIB there is no module system.
// Get one with e.g. `git clone https://github.com/nix-community/nixpkgs.lib` and set
// NIXPKGS_LIB to the checkout (it holds lib/).
import { execFile, spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatSecretKey, generateKeyPair } from '../../../src/nix/signing.js';
import { repoRoot } from '../../helpers/repo.js';
import { runCli } from '../../helpers/server.js';
import { makeTempDir } from '../../helpers/tmp.js';

const run = promisify(execFile);
const NIXPKGS_LIB = process.env.NIXPKGS_LIB;
const skip = NIXPKGS_LIB
  ? false
  : 'NIXPKGS_LIB is unset: set it to a checkout of nixpkgs or nix-community/nixpkgs.lib (the directory holding lib/) to evaluate nixos/module.nix';

const HARNESS = join(repoRoot(), 'test', 'integration', 'nixos', 'eval-module.nix');
const FIXTURE = join(repoRoot(), 'test', 'fixtures', 'nixos', 'module-configs.json');
const PACKAGE = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-narhub-0.1.0';
const CHECKED_CONFIG = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-narhub-config.json';
const CREDENTIALS = '/run/credentials/narhub.service';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

interface Service {
  serviceConfig: Obj;
  environment: Record<string, string>;
  path: string[];
  after: string[];
  requires?: string[];
  wantedBy: string[];
  restartTriggers?: string[];
}

interface Evaluated {
  failedAssertions: string[];
  services: { narhub: Service | null; 'narhub-spoke': Service | null };
  generatedConfig: Obj | null;
  configFile: string | null;
  checkScript: string | null;
  scripts: Record<string, string>;
  adminWrapper: string[];
  users: Record<string, Obj>;
  groups: Record<string, Obj>;
  redis: Record<string, Obj>;
  firewall: number[];
  tmpfiles: string[];
  nixSettings: Record<string, Json>;
}

async function evaluate(
  scenario: string,
  secretsDir = '/var/lib/secrets',
): Promise<{ value: Evaluated; text: string }> {
  const { stdout } = await run(
    'nix-instantiate',
    [
      '--eval',
      '--strict',
      '--json',
      HARNESS,
      '--argstr',
      'nixpkgsLib',
      NIXPKGS_LIB!,
      '--argstr',
      'scenario',
      scenario,
      '--argstr',
      'secretsDir',
      secretsDir,
    ],
    { env: { ...process.env, NIX_PATH: '' }, maxBuffer: 64 * 1024 * 1024 },
  );
  return { value: JSON.parse(stdout) as Evaluated, text: stdout };
}

/** The evaluation's error output; the evaluation must fail. */
async function evaluationError(scenario: string): Promise<string> {
  try {
    await evaluate(scenario);
  } catch (err) {
    return (err as { stderr?: string }).stderr ?? String(err);
  }
  assert.fail(`scenario ${scenario} evaluated, but it should not`);
}

function service(value: Evaluated, name: 'narhub' | 'narhub-spoke'): Service {
  const s = value.services[name];
  assert.ok(s, `systemd.services.${name} is defined`);
  return s;
}

/** Writes the config and runs `narhub check-config` on it. */
async function checkConfig(dir: string, config: Json, ...flags: string[]) {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify(config));
  return runCli(['check-config', file, ...flags], { timeoutMs: 120_000 });
}

const HARDENING: Obj = {
  NoNewPrivileges: true,
  ProtectSystem: 'strict',
  ProtectHome: true,
  PrivateTmp: true,
  PrivateDevices: true,
  ProtectKernelTunables: true,
  ProtectKernelModules: true,
  ProtectKernelLogs: true,
  ProtectControlGroups: true,
  ProtectClock: true,
  ProtectHostname: true,
  RestrictNamespaces: true,
  RestrictRealtime: true,
  RestrictSUIDSGID: true,
  LockPersonality: true,
  SystemCallArchitectures: 'native',
  UMask: '0077',
};

function assertHardened(s: Service, user: string) {
  for (const [k, v] of Object.entries(HARDENING)) assert.deepEqual(s.serviceConfig[k], v, `serviceConfig.${k}`);
  assert.equal(s.serviceConfig.User, user);
  assert.equal(s.serviceConfig.Group, user);
  assert.deepEqual(s.serviceConfig.SystemCallFilter, ['@system-service', '~@privileged']);
  const families = s.serviceConfig.RestrictAddressFamilies as string[];
  for (const f of ['AF_INET', 'AF_INET6', 'AF_UNIX']) assert.ok(families.includes(f), `${f} allowed`);
  assert.ok(
    families.every((f) => ['AF_INET', 'AF_INET6', 'AF_UNIX', 'AF_NETLINK'].includes(f)),
    `only IP, Unix (and netlink) sockets: ${families.join(' ')}`,
  );
}

test('defaults: a hardened unit running the checked config, nothing secret', { skip }, async (t) => {
  const dir = await makeTempDir(t);
  const { value } = await evaluate('minimal');
  assert.deepEqual(value.failedAssertions, []);
  const s = service(value, 'narhub');
  assert.equal(s.serviceConfig.ExecStart, `${PACKAGE}/bin/narhub serve --config ${CHECKED_CONFIG}`);
  assert.equal(value.configFile, CHECKED_CONFIG);
  assert.match(
    value.checkScript ?? '',
    new RegExp(`^${PACKAGE}/bin/narhub check-config --no-secrets /nix/store/\\S+-narhub\\.json\\n`),
  );
  assert.deepEqual(s.restartTriggers, [CHECKED_CONFIG]);
  assertHardened(s, 'narhub');
  assert.deepEqual(s.serviceConfig.RestrictAddressFamilies, ['AF_INET', 'AF_INET6', 'AF_UNIX']);
  assert.deepEqual(s.serviceConfig.StateDirectory, ['narhub']);
  assert.equal(s.serviceConfig.WorkingDirectory, '/var/lib/narhub');
  assert.equal(s.serviceConfig.CapabilityBoundingSet, '');
  assert.deepEqual(s.serviceConfig.AmbientCapabilities, []);
  assert.deepEqual(s.serviceConfig.LoadCredential, []);
  assert.deepEqual(s.serviceConfig.ExecStartPre, []);
  assert.deepEqual(s.path, []);
  assert.deepEqual(s.wantedBy, ['multi-user.target']);
  assert.equal(s.environment.HOME, '/var/lib/narhub');
  assert.equal(value.users.narhub?.isSystemUser, true);
  assert.equal(value.users.narhub?.group, 'narhub');
  assert.deepEqual(value.redis, {});
  assert.deepEqual(value.firewall, []);
  assert.equal(value.services['narhub-spoke'], null);
  // The admin wrapper runs the CLI as the service user on the service's config.
  assert.match(value.adminWrapper[0] ?? '', /runuser -u narhub -- \S+\/bin\/narhub "\$@"/);
  assert.ok((value.adminWrapper[0] ?? '').includes(`--config ${CHECKED_CONFIG}`));

  assert.deepEqual(value.generatedConfig, {
    caches: [],
    dataDir: '/var/lib/narhub',
    gcInterval: 3600,
    hub: { enable: false },
    listen: '127.0.0.1:8080',
    logLevel: 'info',
    maxNarSize: 68719476736,
    pendingGracePeriod: 86400,
    supersededGracePeriod: 3456000,
    storage: { type: 'local' },
  });
  for (const flags of [['--no-secrets'], []]) {
    const res = await checkConfig(dir, value.generatedConfig, ...flags);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, 'ok\n');
  }
});

test('everything on: credentials, S3, the hub with its Redis, a spoke; secrets stay out', { skip }, async (t) => {
  const dir = await makeTempDir(t);
  const secrets = join(dir, 'secrets');
  await mkdir(secrets);
  const password = 'a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5';
  const contents: Record<string, string> = {
    'main.secret': formatSecretKey(generateKeyPair('main-test-1').secret),
    's3-access-key-id': 'AKIASENTINELACCESSKEY',
    's3-secret-access-key': 'sentinel-secret-access-key-9f8e7d',
    's3-session-token': 'sentinel-session-token-6c5b4a',
    'redis-password': password,
    'spoke-token': 'nh_sentinelspoketoken',
    'spoke-redis-url': `redis://:sentinel-spoke-redis-password@hub:6379/0`,
  };
  for (const [name, text] of Object.entries(contents))
    await writeFile(join(secrets, name), `${text}\n`, { mode: 0o600 });

  const { value, text } = await evaluate('full', secrets);
  assert.deepEqual(value.failedAssertions, []);
  for (const [name, secret] of Object.entries(contents)) {
    assert.ok(!text.includes(secret.split(':').pop()!), `the content of ${name} is in the evaluated configuration`);
  }

  const s = service(value, 'narhub');
  assertHardened(s, 'narhub');
  // Listening on 0.0.0.0: Fastify lists the interfaces (getifaddrs, over netlink).
  assert.deepEqual(s.serviceConfig.RestrictAddressFamilies, ['AF_INET', 'AF_INET6', 'AF_UNIX', 'AF_NETLINK']);
  const credentials = (s.serviceConfig.LoadCredential as string[]).map((c) => c.split(':') as [string, string]);
  assert.deepEqual(Object.fromEntries(credentials), {
    'redis-password': join(secrets, 'redis-password'),
    's3-access-key-id': join(secrets, 's3-access-key-id'),
    's3-secret-access-key': join(secrets, 's3-secret-access-key'),
    's3-session-token': join(secrets, 's3-session-token'),
    'signing-key-main': join(secrets, 'main.secret'),
  });
  // Secret files are named only in LoadCredential (and in Redis's own requirePassFile).
  for (const part of [
    s.serviceConfig.ExecStart,
    s.serviceConfig.ExecStartPre,
    s.environment,
    value.generatedConfig,
    service(value, 'narhub-spoke').serviceConfig.ExecStart,
  ]) {
    assert.ok(!JSON.stringify(part).includes(secrets), `a secret file's path leaks into ${JSON.stringify(part)}`);
  }
  assert.equal(s.serviceConfig.ExecStart, `${PACKAGE}/bin/narhub serve --config ${CHECKED_CONFIG}`);
  assert.deepEqual(s.after, ['network-online.target', 'redis-narhub.service']);
  assert.deepEqual(s.requires, ['redis-narhub.service']);
  assert.deepEqual(
    s.path.map((p) => p.replace(/^\/nix\/store\/[^-]+-/, '')),
    ['nix-2.31.2', 'git-2.51.0'],
  );
  assert.deepEqual(value.firewall, [8443, 6379]);

  const config = value.generatedConfig!;
  assert.deepEqual(config.caches, [
    { name: 'main', private: false, priority: 40, signingKeyFile: `${CREDENTIALS}/signing-key-main` },
    { name: 'team', private: true, priority: 30, recompressToZstd: true },
  ]);
  assert.deepEqual(config.storage, {
    type: 's3',
    bucket: 'narhub-test',
    region: 'eu-central-1',
    endpoint: 'http://127.0.0.1:9000',
    prefix: 'narhub/',
    forcePathStyle: true,
    partSize: 8388608,
    accessKeyIdFile: `${CREDENTIALS}/s3-access-key-id`,
    secretAccessKeyFile: `${CREDENTIALS}/s3-secret-access-key`,
    sessionTokenFile: `${CREDENTIALS}/s3-session-token`,
  });
  assert.deepEqual(config.hub, { enable: true, evalWorkers: 2, redisUrlFile: '/run/narhub/redis-url' });
  assert.equal(config.listen, '0.0.0.0:8443');
  assert.equal(config.publicUrl, 'https://cache.example.org');
  assert.equal(config.pendingGracePeriod, 7200);
  assert.equal(config.gcInterval, 600);
  assert.deepEqual(config.zstd, { level: 9 });

  // The local Redis: persistent, never evicting, password from a file, reachable by narhub.
  assert.deepEqual(value.redis.narhub, {
    enable: true,
    port: 6379,
    bind: '0.0.0.0',
    requirePassFile: join(secrets, 'redis-password'),
    appendOnly: true,
    settings: { 'maxmemory-policy': 'noeviction' },
    unixSocket: '/run/redis-narhub/redis.sock',
    user: 'redis-narhub',
  });
  assert.deepEqual(value.users.narhub?.extraGroups, ['redis-narhub']);

  // Checked at build time without the secrets...
  const plain = await checkConfig(dir, config, '--no-secrets');
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, 'ok\n');
  // ...which check-config otherwise insists on.
  const strict = await checkConfig(dir, config);
  assert.equal(strict.code, 1);
  assert.match(
    strict.stderr,
    /caches\.0\.signingKeyFile: cannot read \/run\/credentials\/narhub\.service\/signing-key-main/,
  );

  // What systemd does at start: copy each credential, run ExecStartPre (the Redis URL).
  const creds = join(dir, 'credentials');
  const runtime = join(dir, 'runtime');
  await mkdir(creds);
  await mkdir(runtime, { mode: 0o700 });
  for (const [name, source] of credentials) await copyFile(source, join(creds, name));
  const pre = s.serviceConfig.ExecStartPre as string[];
  assert.equal(pre.length, 1);
  const script = value.scripts[pre[0]!];
  assert.ok(script, 'the ExecStartPre script text');
  const ran = spawnSync('bash', ['-c', script], {
    env: { PATH: process.env.PATH, CREDENTIALS_DIRECTORY: creds, RUNTIME_DIRECTORY: runtime },
    encoding: 'utf8',
  });
  assert.equal(ran.status, 0, ran.stderr);
  assert.equal(
    await readFile(join(runtime, 'redis-url'), 'utf8'),
    `redis://:${password}@localhost/0?path=/run/redis-narhub/redis.sock\n`,
  );
  assert.equal((await stat(join(runtime, 'redis-url'))).mode & 0o777, 0o600);
  const atRunTime = JSON.parse(
    JSON.stringify(config).replaceAll(`${CREDENTIALS}/`, `${creds}/`).replaceAll('/run/narhub/', `${runtime}/`),
  ) as Json;
  const full = await checkConfig(dir, atRunTime);
  assert.equal(full.code, 0, full.stderr);
  assert.equal(full.stdout, 'ok\n');

  // A password that would need escaping in a URL is refused, and nothing is written.
  await chmod(join(creds, 'redis-password'), 0o600);
  await writeFile(join(creds, 'redis-password'), 'p@ss/word\n');
  const badRuntime = join(dir, 'runtime-bad');
  await mkdir(badRuntime);
  const bad = spawnSync('bash', ['-c', script], {
    env: { PATH: process.env.PATH, CREDENTIALS_DIRECTORY: creds, RUNTIME_DIRECTORY: badRuntime },
    encoding: 'utf8',
  });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /passwordFile must hold/);
  await assert.rejects(stat(join(badRuntime, 'redis-url')));

  // The spoke: a trusted user of nix-daemon, token and Redis URL as credentials.
  const spoke = service(value, 'narhub-spoke');
  assertHardened(spoke, 'narhub-spoke');
  assert.match(
    spoke.serviceConfig.ExecStart as string,
    /^\/nix\/store\/\S+-narhub-spoke spoke --hub https:\/\/cache\.example\.org --token-file %d\/token --systems x86_64-linux,i686-linux --max-jobs 4 --features kvm,big-parallel --timeout 7200 --max-silent 600$/,
  );
  assert.deepEqual(spoke.serviceConfig.LoadCredential, [
    `token:${join(secrets, 'spoke-token')}`,
    `redis-url:${join(secrets, 'spoke-redis-url')}`,
  ]);
  assert.equal(spoke.environment.NIX_REMOTE, 'daemon');
  // nix-daemon must see the spoke's netrc: not in the unit's private /tmp.
  assert.equal(spoke.environment.TMPDIR, '/run/narhub-spoke');
  assert.equal(spoke.serviceConfig.RuntimeDirectory, 'narhub-spoke');
  assert.equal(spoke.serviceConfig.RuntimeDirectoryMode, '0700');
  assert.equal(spoke.serviceConfig.KillMode, 'mixed');
  assert.deepEqual(value.nixSettings['trusted-users'], ['root', 'narhub-spoke']);
  assert.equal(value.users['narhub-spoke']?.isSystemUser, true);
});

test('external Redis and AWS credentials file, data outside /var/lib, local store elsewhere', { skip }, async (t) => {
  const dir = await makeTempDir(t);
  const external = (await evaluate('external')).value;
  assert.deepEqual(external.failedAssertions, []);
  const s = service(external, 'narhub');
  assert.equal(s.environment.AWS_SHARED_CREDENTIALS_FILE, `${CREDENTIALS}/s3-credentials`);
  assert.deepEqual(s.serviceConfig.LoadCredential, [
    'redis-url:/var/lib/secrets/redis-url',
    's3-credentials:/var/lib/secrets/aws-credentials',
  ]);
  assert.deepEqual(s.serviceConfig.StateDirectory, []);
  assert.deepEqual(s.serviceConfig.ReadWritePaths, ['/srv/narhub']);
  assert.equal(s.serviceConfig.WorkingDirectory, '/srv/narhub');
  assert.deepEqual(external.tmpfiles, ['d /srv/narhub 0750 narhub narhub - -']);
  assert.deepEqual(external.redis, {});
  assert.deepEqual(s.requires, []);
  assert.deepEqual(external.generatedConfig?.hub, { enable: true, redisUrlFile: `${CREDENTIALS}/redis-url` });
  assert.equal(external.generatedConfig?.listen, '[::1]:8080');
  assert.deepEqual(external.generatedConfig?.storage, {
    type: 's3',
    bucket: 'narhub-test',
    region: 'us-east-1',
    prefix: '',
    forcePathStyle: false,
  });
  const ok = await checkConfig(dir, external.generatedConfig, '--no-secrets');
  assert.equal(ok.code, 0, ok.stderr);

  const local = (await evaluate('localHub')).value;
  assert.deepEqual(local.failedAssertions, []);
  const l = service(local, 'narhub');
  assert.deepEqual(local.generatedConfig?.hub, {
    enable: true,
    redisUrl: 'redis://localhost/0?path=/run/redis-narhub/redis.sock',
  });
  assert.deepEqual(local.generatedConfig?.storage, { type: 'local', path: '/srv/narhub-store' });
  assert.deepEqual(l.serviceConfig.ReadWritePaths, ['/srv/narhub-store']);
  assert.ok(local.tmpfiles.includes('d /srv/narhub-store 0750 narhub narhub - -'));
  // Port 80 needs CAP_NET_BIND_SERVICE, and nothing else.
  assert.deepEqual(l.serviceConfig.CapabilityBoundingSet, ['CAP_NET_BIND_SERVICE']);
  assert.deepEqual(l.serviceConfig.AmbientCapabilities, ['CAP_NET_BIND_SERVICE']);
  assert.deepEqual(l.serviceConfig.ExecStartPre, []);
  assert.equal(local.redis.narhub?.port, 0);
  assert.equal(local.redis.narhub?.requirePassFile, null);
  const localOk = await checkConfig(dir, local.generatedConfig);
  assert.equal(localOk.code, 0, localOk.stderr);
});

test('spoke arguments are escaped for systemd', { skip }, async () => {
  const { value } = await evaluate('spokePlain');
  assert.deepEqual(value.failedAssertions, []);
  const spoke = service(value, 'narhub-spoke');
  assert.equal(
    spoke.serviceConfig.ExecStart,
    `${PACKAGE}/bin/narhub spoke --hub 'http://hub:8080/some%%20path$$HOME' --token-file %d/token --redis-url redis://hub:6379/0 ` +
      '--systems x86_64-linux --max-jobs 1 --features nixos-test,benchmark,big-parallel,kvm --store daemon',
  );
  assert.deepEqual(spoke.serviceConfig.LoadCredential, ['token:/var/lib/secrets/spoke-token']);
  assert.equal(spoke.environment.NIX_REMOTE, undefined);
  assert.equal(spoke.serviceConfig.RestrictNamespaces, true);
  assert.equal(value.services.narhub, null);

  // A chroot store: the spoke runs Nix's sandbox itself, in a directory it may write.
  const chroot = service((await evaluate('spokeChroot')).value, 'narhub-spoke');
  assert.match(chroot.serviceConfig.ExecStart as string, / --store \/srv\/spoke-store$/);
  assert.equal(chroot.serviceConfig.RestrictNamespaces, false);
  assert.deepEqual(chroot.serviceConfig.SystemCallFilter, ['@system-service', '@mount', '@privileged']);
  assert.deepEqual(chroot.serviceConfig.ReadWritePaths, ['/srv/spoke-store']);
  assert.equal(chroot.serviceConfig.ProtectSystem, 'strict');
});

test("the flake's nixosModules.default runs the flake's package", { skip }, async () => {
  const { value } = await evaluate('flakeModule');
  assert.deepEqual(value.failedAssertions, []);
  const flakePackage = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-narhub-from-flake-0.1.0';
  assert.equal(
    service(value, 'narhub').serviceConfig.ExecStart,
    `${flakePackage}/bin/narhub serve --config ${CHECKED_CONFIG}`,
  );
  assert.ok(
    (service(value, 'narhub-spoke').serviceConfig.ExecStart as string).startsWith(`${flakePackage}/bin/narhub spoke `),
  );
  assert.ok((value.checkScript ?? '').startsWith(`${flakePackage}/bin/narhub check-config --no-secrets `));
});

test('mistakes are refused at evaluation, or by check-config at build time', { skip }, async (t) => {
  const dir = await makeTempDir(t);
  assert.match(await evaluationError('secretInStore'), /signingKeyFile[\s\S]*not of type[\s\S]*not in the Nix store/);

  const expectations: Record<string, RegExp> = {
    redisWithoutPassword: /hub\.redis\.port exposes Redis over TCP: set services\.narhub\.hub\.redis\.passwordFile/,
    badCacheName: /services\.narhub\.caches: a cache name is 1-63 of a-z/,
    s3HalfCredentials: /accessKeyIdFile and secretAccessKeyFile go together/,
    spokeTwoRedisUrls: /exactly one of redisUrl and redisUrlFile/,
  };
  for (const [scenario, message] of Object.entries(expectations)) {
    const { value } = await evaluate(scenario);
    assert.ok(
      value.failedAssertions.some((m) => message.test(m)),
      `${scenario}: ${JSON.stringify(value.failedAssertions)}`,
    );
  }

  // Evaluates, but the build-time check names the typo.
  const typo = (await evaluate('settingsTypo')).value;
  assert.deepEqual(typo.failedAssertions, []);
  const res = await checkConfig(dir, typo.generatedConfig, '--no-secrets');
  assert.equal(res.code, 1);
  assert.match(res.stderr, /maxNarSiz/);
  assert.equal(res.stdout, '');
});

test('the committed module configs (used by check-config.test.ts) match the module', { skip }, async () => {
  const fresh: Record<string, Json> = {};
  for (const scenario of ['minimal', 'full', 'external', 'localHub'])
    fresh[scenario] = (await evaluate(scenario)).value.generatedConfig;
  if (process.env.NARHUB_UPDATE_FIXTURES === '1') await writeFile(FIXTURE, `${JSON.stringify(fresh, null, 2)}\n`);
  const committed = JSON.parse(await readFile(FIXTURE, 'utf8')) as Json;
  assert.deepEqual(committed, fresh, `${FIXTURE} is stale: rerun this test with NARHUB_UPDATE_FIXTURES=1`);
});
