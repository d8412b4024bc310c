// Evaluates nixos/module.nix with the real NixOS module system (lib.evalModules of nixpkgs' lib,
// found at $NIXPKGS_LIB) through eval-module.nix, and checks what the module produces: the
// units, the generated JSON config (which must pass `narhub check-config`), that no secret
// reaches a command line, the config or the store, and that mistakes are refused. Scripts the
// units run (ExecStartPre, the hub's `nix`, narhub-admin) are run here with bash.
//
// This folder is not part of `npm test`: `npm run test:nixpkgs-lib` runs it, and fails without
// NIXPKGS_LIB (see test/helpers/nix-eval.ts for why CI has none).
// What only a VM shows (these machines have no KVM) is in nixos/tests/: systemd starting the
// units, readiness, Redis restarts, a chroot-store spoke building.
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../../src/config/load.js';
import { ConfigSchema } from '../../../src/config/schema.js';
import { formatSecretKey, generateKeyPair } from '../../../src/nix/signing.js';
import { evalNixJson, nixpkgsLib } from '../../helpers/nix-eval.js';
import { CLI_PATH, runCli, startServer } from '../../helpers/server.js';
import { makeTempDir } from '../../helpers/tmp.js';

const PACKAGE = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-narhub-0.1.0';
const CHECKED_CONFIG = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-narhub-config.json';
const SYSTEMD = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-systemd-258.2';
const HUB_NIX = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nix';
const REAL_NIX = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nix-2.31.2';
const CREDENTIALS = '/run/credentials/narhub.service';
const SOCKET_URL = 'redis://localhost/0?path=/run/redis-narhub/redis.sock';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

interface Service {
  serviceConfig: Obj;
  unitConfig?: Obj;
  environment: Record<string, string>;
  path: string[];
  after: string[];
  wants: string[];
  requires?: string[];
  wantedBy: string[];
  restartTriggers?: string[];
}

interface Evaluated {
  failedAssertions: string[];
  warnings: string[];
  services: { narhub: Service | null; 'narhub-spoke': Service | null };
  generatedConfig: Obj | null;
  configFile: string | null;
  checkScript: string | null;
  scripts: Record<string, string>;
  adminWrapper: string[];
  users: Record<string, Obj>;
  groups: Record<string, Obj>;
  redis: Record<string, Obj>;
  redisVmOverCommit: boolean;
  firewall: number[];
  tmpfiles: string[];
  nixSettings: Record<string, Json>;
}

async function evaluate(scenario: string, args: Record<string, string> = {}) {
  return evalNixJson<Evaluated>('eval-module.nix', { nixpkgsLib: nixpkgsLib(), scenario, ...args });
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

async function failedAssertions(scenario: string): Promise<string[]> {
  return (await evaluate(scenario)).value.failedAssertions;
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

/** Runs a script's text with bash; `replace` swaps store paths of stubs for real files. */
function runScript(text: string, env: NodeJS.ProcessEnv, args: string[] = [], replace: Record<string, string> = {}) {
  let script = text;
  for (const [from, to] of Object.entries(replace)) script = script.replaceAll(from, to);
  return spawnSync('bash', ['-c', script, 'script', ...args], { env, encoding: 'utf8' });
}

const HARDENING: Obj = {
  NoNewPrivileges: true,
  ProtectSystem: 'strict',
  ProtectHome: true,
  PrivateTmp: true,
  PrivateDevices: true,
  DevicePolicy: 'closed',
  ProtectKernelTunables: true,
  ProtectKernelModules: true,
  ProtectKernelLogs: true,
  ProtectControlGroups: true,
  ProtectClock: true,
  ProtectHostname: true,
  ProtectProc: 'invisible',
  RestrictNamespaces: true,
  RestrictRealtime: true,
  RestrictSUIDSGID: true,
  LockPersonality: true,
  SystemCallArchitectures: 'native',
  SystemCallFilter: ['@system-service', '~@privileged'],
  UMask: '0077',
};

function assertHardened(s: Service, user: string) {
  for (const [k, v] of Object.entries(HARDENING)) assert.deepEqual(s.serviceConfig[k], v, `serviceConfig.${k}`);
  assert.equal(s.serviceConfig.User, user);
  assert.equal(s.serviceConfig.Group, user);
  const families = s.serviceConfig.RestrictAddressFamilies as string[];
  for (const f of ['AF_INET', 'AF_INET6', 'AF_UNIX']) assert.ok(families.includes(f), `${f} allowed`);
  assert.ok(
    families.every((f) => ['AF_INET', 'AF_INET6', 'AF_UNIX', 'AF_NETLINK'].includes(f)),
    `only IP, Unix (and netlink) sockets: ${families.join(' ')}`,
  );
}

test('defaults: a hardened notify unit on the checked config, with narhub defaults, nothing secret', async (t) => {
  const dir = await makeTempDir(t);
  const { value } = await evaluate('minimal');
  assert.deepEqual(value.failedAssertions, []);
  assert.deepEqual(value.warnings, []);
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
  assert.deepEqual(s.serviceConfig.ReadWritePaths, []);
  assert.deepEqual(s.unitConfig?.RequiresMountsFor, ['/var/lib/narhub']);
  assert.equal(s.serviceConfig.WorkingDirectory, '/var/lib/narhub');
  assert.equal(s.serviceConfig.CapabilityBoundingSet, '');
  assert.deepEqual(s.serviceConfig.AmbientCapabilities, []);
  assert.deepEqual(s.serviceConfig.LoadCredential, []);
  assert.deepEqual(s.serviceConfig.ExecStartPre, []);
  // Readiness: narhub calls systemd-notify once it listens (serve.ts), from the unit's PATH.
  assert.equal(s.serviceConfig.Type, 'notify');
  assert.equal(s.serviceConfig.NotifyAccess, 'all');
  assert.deepEqual(s.path, [SYSTEMD]);
  assert.deepEqual(s.wantedBy, ['multi-user.target']);
  assert.equal(s.environment.HOME, '/var/lib/narhub');
  assert.equal(value.users.narhub?.isSystemUser, true);
  assert.deepEqual(value.users.narhub?.extraGroups, []);
  assert.deepEqual(value.redis, {});
  assert.equal(value.redisVmOverCommit, false);
  assert.deepEqual(value.firewall, []);
  assert.deepEqual(value.tmpfiles, []);
  assert.equal(value.services['narhub-spoke'], null);

  // The options' defaults are narhub's own (they come from the schema): the generated config
  // is what narhub makes of a config naming only the data directory.
  const narhubDefaults = parseConfig({ dataDir: '/var/lib/narhub' }) as unknown as Obj;
  assert.deepEqual(value.generatedConfig, narhubDefaults);
  for (const flags of [['--no-secrets'], []]) {
    const res = await checkConfig(dir, value.generatedConfig, ...flags);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, 'ok\n');
  }
});

test('everything on: credentials, S3, the hub with its Redis, a spoke; secrets stay out', async (t) => {
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

  const { value, text } = await evaluate('full', { secretsDir: secrets });
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
    'storage.accessKeyIdFile': join(secrets, 's3-access-key-id'),
    'storage.secretAccessKeyFile': join(secrets, 's3-secret-access-key'),
    'storage.sessionTokenFile': join(secrets, 's3-session-token'),
    'caches.main.signingKeyFile': join(secrets, 'main.secret'),
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
  // The hub's PATH: nix behind its OOM wrapper, git, and ssh for git+ssh flakes.
  assert.deepEqual(
    s.path.map((p) => p.replace(/^\/nix\/store\/[^-]+-/, '')),
    ['systemd-258.2', 'nix', 'nix-2.31.2', 'git-2.51.0', 'openssh-10.2p1'],
  );
  assert.deepEqual(value.firewall, [8443, 6379]);

  const config = value.generatedConfig!;
  assert.deepEqual(config.caches, [
    {
      name: 'main',
      private: false,
      priority: 40,
      redirectNars: false,
      redirectExpiry: 300,
      recompressToZstd: false,
      signingKeyFile: `${CREDENTIALS}/caches.main.signingKeyFile`,
      upstreams: [],
    },
    {
      name: 'team',
      private: true,
      priority: 30,
      redirectNars: false,
      redirectExpiry: 300,
      recompressToZstd: true,
      upstreams: [
        {
          url: 'https://cache.nixos.org',
          publicKeys: ['cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY='],
          priority: 40,
        },
      ],
    },
  ]);
  assert.deepEqual(config.storage, {
    type: 's3',
    bucket: 'narhub-test',
    region: 'eu-central-1',
    endpoint: 'http://127.0.0.1:9000',
    prefix: 'narhub/',
    forcePathStyle: true,
    partSize: 8388608,
    queueSize: 4,
    accessKeyIdFile: `${CREDENTIALS}/storage.accessKeyIdFile`,
    secretAccessKeyFile: `${CREDENTIALS}/storage.secretAccessKeyFile`,
    sessionTokenFile: `${CREDENTIALS}/storage.sessionTokenFile`,
  });
  assert.equal((config.hub as Obj).redisUrlFile, '/run/narhub/redis-url');
  assert.equal((config.hub as Obj).evalWorkers, 2);
  assert.equal(config.listen, '0.0.0.0:8443');
  assert.equal(config.publicUrl, 'https://cache.example.org');
  assert.deepEqual(config.gc, { interval: 600, pendingGracePeriod: 7200, supersededGracePeriod: 40 * 86_400 });
  assert.deepEqual(config.zstd, { level: 9, workers: 2 });

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
    group: 'redis-narhub',
  });
  assert.deepEqual(value.users.narhub?.extraGroups, ['redis-narhub']);

  // Checked at build time without the secrets...
  const plain = await checkConfig(dir, config, '--no-secrets');
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, 'ok\n');
  // ...which check-config otherwise insists on.
  const strict = await checkConfig(dir, config);
  assert.equal(strict.code, 1);
  assert.match(strict.stderr, /cannot read \/run\/credentials\/narhub\.service\//);

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
  const ran = runScript(script, { PATH: process.env.PATH, CREDENTIALS_DIRECTORY: creds, RUNTIME_DIRECTORY: runtime });
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
  const bad = runScript(script, {
    PATH: process.env.PATH,
    CREDENTIALS_DIRECTORY: creds,
    RUNTIME_DIRECTORY: badRuntime,
  });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /passwordFile must hold/);
  await assert.rejects(stat(join(badRuntime, 'redis-url')));

  // The spoke: a trusted user of nix-daemon, token and Redis URL as credentials.
  const spoke = service(value, 'narhub-spoke');
  assertHardened(spoke, 'narhub-spoke');
  const launcher = (spoke.serviceConfig.ExecStart as string).match(/^\/nix\/store\/\S+-narhub-spoke (.*)$/);
  assert.equal(
    launcher?.[1],
    'spoke --hub https://cache.example.org --token-file %d/token --systems x86_64-linux,i686-linux --max-jobs 4 ' +
      '--features kvm,big-parallel --timeout 7200 --max-silent 600',
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
  assert.deepEqual(value.nixSettings['trusted-users'], ['root', 'narhub-spoke']);
  assert.equal(value.users['narhub-spoke']?.isSystemUser, true);
});

test('settings drive the unit: dataDir, listen, storage.path outside /var/lib, and the old option names', async (t) => {
  const dir = await makeTempDir(t);
  const external = (await evaluate('external')).value;
  assert.deepEqual(external.failedAssertions, []);
  const s = service(external, 'narhub');
  assert.equal(s.environment.AWS_SHARED_CREDENTIALS_FILE, `${CREDENTIALS}/aws-credentials`);
  assert.deepEqual(s.serviceConfig.LoadCredential, [
    'aws-credentials:/var/lib/secrets/aws-credentials',
    'hub.redisUrlFile:/var/lib/secrets/redis-url',
  ]);
  // Not /var/lib: no StateDirectory, but tmpfiles, ReadWritePaths and the mount.
  assert.deepEqual(s.serviceConfig.StateDirectory, []);
  assert.deepEqual(s.serviceConfig.ReadWritePaths, ['/srv/narhub']);
  assert.deepEqual(s.unitConfig?.RequiresMountsFor, ['/srv/narhub']);
  assert.equal(s.serviceConfig.WorkingDirectory, '/srv/narhub');
  assert.equal(s.environment.HOME, '/srv/narhub');
  assert.equal(external.users.narhub?.home, '/srv/narhub');
  assert.deepEqual(external.tmpfiles, ['d /srv/narhub 0750 narhub narhub - -']);
  assert.deepEqual(external.redis, {});
  assert.equal((external.generatedConfig!.hub as Obj).redisUrlFile, `${CREDENTIALS}/hub.redisUrlFile`);
  assert.equal(external.generatedConfig?.listen, '[::1]:8080');
  // Only the keys of the chosen storage type.
  assert.deepEqual(external.generatedConfig?.storage, {
    type: 's3',
    bucket: 'narhub-test',
    region: 'us-east-1',
    prefix: '',
    forcePathStyle: false,
    partSize: 16777216,
    queueSize: 4,
  });
  const ok = await checkConfig(dir, external.generatedConfig, '--no-secrets');
  assert.equal(ok.code, 0, ok.stderr);

  const local = (await evaluate('localHub')).value;
  assert.deepEqual(local.failedAssertions, []);
  const l = service(local, 'narhub');
  assert.equal((local.generatedConfig!.hub as Obj).redisUrl, SOCKET_URL);
  assert.deepEqual(local.generatedConfig?.storage, { type: 'local', path: '/srv/narhub-store' });
  assert.deepEqual(l.serviceConfig.ReadWritePaths, ['/srv/narhub-store']);
  assert.deepEqual(l.unitConfig?.RequiresMountsFor, ['/var/lib/narhub', '/srv/narhub-store']);
  assert.deepEqual(local.tmpfiles, ['d /srv/narhub-store 0750 narhub narhub - -']);
  // Port 80 from settings.listen needs CAP_NET_BIND_SERVICE, and nothing else.
  assert.deepEqual(l.serviceConfig.CapabilityBoundingSet, ['CAP_NET_BIND_SERVICE']);
  assert.deepEqual(l.serviceConfig.AmbientCapabilities, ['CAP_NET_BIND_SERVICE']);
  assert.deepEqual(l.serviceConfig.RestrictAddressFamilies, ['AF_INET', 'AF_INET6', 'AF_UNIX']);
  assert.deepEqual(l.serviceConfig.ExecStartPre, []);
  assert.equal(local.redis.narhub?.port, 0);
  assert.equal(local.redis.narhub?.requirePassFile, null);
  const localOk = await checkConfig(dir, local.generatedConfig);
  assert.equal(localOk.code, 0, localOk.stderr);

  // The options that became settings still work under their old names, with a warning each.
  const renamed = (await evaluate('renamed')).value;
  assert.deepEqual(renamed.failedAssertions, []);
  assert.equal(renamed.warnings.length, 5, renamed.warnings.join('\n'));
  for (const w of renamed.warnings) assert.match(w, /has been renamed to `services\.narhub\.settings\./);
  assert.equal(renamed.generatedConfig?.dataDir, '/srv/narhub');
  assert.equal(renamed.generatedConfig?.logLevel, 'warn');
  assert.deepEqual((renamed.generatedConfig as Obj | undefined)?.gc, {
    interval: 60,
    pendingGracePeriod: 86_400,
    supersededGracePeriod: 40 * 86_400,
  });
  assert.equal(renamed.generatedConfig?.gcInterval, undefined);
  // settings.gcInterval and the grace periods of earlier versions went to settings.gc.
  const settingsRenamed = (await evaluate('renamedSettings')).value;
  assert.deepEqual(settingsRenamed.failedAssertions, []);
  assert.equal(settingsRenamed.warnings.length, 2, settingsRenamed.warnings.join('\n'));
  const [w1, w2] = settingsRenamed.warnings.sort();
  assert.match(
    w1!,
    /services\.narhub\.settings\.gcInterval' [\s\S]*renamed to `services\.narhub\.settings\.gc\.interval'/,
  );
  assert.match(
    w2!,
    new RegExp(
      "services\\.narhub\\.settings\\.pendingGracePeriod' [\\s\\S]*" +
        "renamed to `services\\.narhub\\.settings\\.gc\\.pendingGracePeriod'",
    ),
  );
  const moved = settingsRenamed.generatedConfig as Obj;
  assert.deepEqual(moved.gc, { interval: '2h', pendingGracePeriod: 60, supersededGracePeriod: 40 * 86_400 });
  assert.equal(moved.gcInterval, undefined);
  assert.equal(moved.pendingGracePeriod, undefined);
  const movedOk = await checkConfig(dir, moved, '--no-secrets');
  assert.equal(movedOk.code, 0, movedOk.stderr);
  assert.equal(movedOk.stderr, '', 'nothing deprecated reaches narhub');
  assert.deepEqual(renamed.generatedConfig?.storage, { type: 'local', path: '/srv/narhub-store' });
  assert.deepEqual(service(renamed, 'narhub').serviceConfig.ReadWritePaths, ['/srv/narhub', '/srv/narhub-store']);
  assert.ok(
    (await failedAssertions('removedAddress')).some((m) =>
      /services\.narhub\.address' [\s\S]* no longer has any effect[\s\S]*settings\.listen = "ADDRESS:PORT"/.test(m),
    ),
  );
});

test('settings options come from the schema; caches add up across modules and are refused in settings', async (t) => {
  const dir = await makeTempDir(t);
  // A value the schema forbids fails the evaluation, naming the option and the schema's bounds.
  assert.match(
    await evaluationError('zstdLevelOutOfRange'),
    /services\.narhub\.settings\.zstd\.level[\s\S]*integer between 1 and 19/,
  );
  // Secret files anywhere in the settings must be outside the store.
  assert.match(
    await evaluationError('s3SecretInStore'),
    /settings\.storage\.accessKeyIdFile[\s\S]*not of type[\s\S]*not in the Nix store/,
  );
  // Sizes and durations may be written as narhub reads them; check-config takes them.
  const units = (await evaluate('unitStrings')).value;
  assert.deepEqual(units.failedAssertions, []);
  assert.equal(units.generatedConfig?.maxNarSize, '50G');
  assert.equal(((units.generatedConfig as Obj).gc as Obj).interval, '1h30m');
  const unitsOk = await checkConfig(dir, units.generatedConfig, '--no-secrets');
  assert.equal(unitsOk.code, 0, unitsOk.stderr);
  assert.match(await evaluationError('badDuration'), /services\.narhub\.settings\.gc\.interval[\s\S]*not of type/);
  const level = (ConfigSchema.properties.zstd.properties.level as { maximum: number }).maximum;
  assert.equal(level, 19, 'the bound the message above names is the schema’s');

  const two = (await evaluate('cachesFromTwoModules')).value;
  assert.deepEqual(two.failedAssertions, []);
  assert.deepEqual(
    (two.generatedConfig!.caches as Obj[]).map((c) => [c.name, c.private, c.signingKeyFile ?? null]),
    [
      ['main', false, `${CREDENTIALS}/caches.main.signingKeyFile`],
      ['team', true, null],
    ],
  );
  assert.deepEqual(service(two, 'narhub').serviceConfig.LoadCredential, [
    'caches.main.signingKeyFile:/var/lib/secrets/main.secret',
  ]);
  assert.ok(
    (await failedAssertions('cachesInSettings')).some((m) =>
      /settings\.caches: declare caches in services\.narhub\.caches/.test(m),
    ),
  );
});

test('an evaluation killed for lack of memory leaves the cache running', async (t) => {
  const dir = await makeTempDir(t);
  const { value } = await evaluate('localHub');
  const s = service(value, 'narhub');
  assert.equal(s.serviceConfig.OOMPolicy, 'continue');
  assert.equal(s.path[1], HUB_NIX, "the hub's nix comes before Nix itself on PATH");
  const wrapper = value.scripts[HUB_NIX];
  assert.ok(wrapper, 'the nix wrapper script');
  // The wrapper raises its own OOM score, then runs the real nix with the same arguments.
  const fakeNix = join(dir, 'nix');
  await writeFile(fakeNix, '#!/bin/sh\necho "$(cat /proc/self/oom_score_adj) $*"\n', { mode: 0o755 });
  const ran = runScript(wrapper, { PATH: process.env.PATH }, ['eval', '--json', 'a b'], {
    [`${REAL_NIX}/bin/nix`]: fakeNix,
  });
  assert.equal(ran.status, 0, ran.stderr);
  assert.equal(ran.stdout, '500 eval --json a b\n');
});

test("a chroot-store spoke may run Nix's sandbox; a daemon spoke keeps the full hardening", async () => {
  const chroot = service((await evaluate('spokeChroot')).value, 'narhub-spoke');
  assert.match(chroot.serviceConfig.ExecStart as string, / --store \/srv\/spoke-store$/);
  const relaxed: Obj = {
    RestrictNamespaces: false,
    SystemCallFilter: ['@system-service', '@mount', '@privileged'],
    // A fresh /proc in a user namespace: nothing may cover parts of /proc (NixOS/nix#13128).
    ProtectKernelTunables: false,
    ProtectKernelLogs: false,
    ProtectProc: 'default',
    PrivateDevices: false,
    DevicePolicy: 'auto',
    // sethostname in the build's UTS namespace; personality() for ASLR off and i686 builds.
    ProtectHostname: false,
    LockPersonality: false,
    // i686-linux is among the systems: its 32-bit system calls.
    SystemCallArchitectures: '',
    ReadWritePaths: ['/srv/spoke-store'],
  };
  for (const [k, v] of Object.entries(relaxed)) assert.deepEqual(chroot.serviceConfig[k], v, `serviceConfig.${k}`);
  // The rest of the hardening stays.
  for (const k of ['NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'ProtectKernelModules', 'ProtectClock', 'UMask'])
    assert.deepEqual(chroot.serviceConfig[k], HARDENING[k], k);

  const plain = (await evaluate('spokePlain')).value;
  assert.deepEqual(plain.failedAssertions, []);
  const spoke = service(plain, 'narhub-spoke');
  assertHardened(spoke, 'narhub-spoke');
  assert.equal(
    spoke.serviceConfig.ExecStart,
    `${PACKAGE}/bin/narhub spoke --hub 'http://hub:8080/some%%20path$$HOME' --token-file %d/token ` +
      '--redis-url redis://hub:6379/0 ' +
      '--systems x86_64-linux --max-jobs 1 --features nixos-test,benchmark,big-parallel,kvm --store daemon',
  );
  assert.deepEqual(spoke.serviceConfig.LoadCredential, ['token:/var/lib/secrets/spoke-token']);
  assert.equal(spoke.environment.NIX_REMOTE, undefined);
  assert.equal(plain.services.narhub, null);
});

test('Redis: wanted, not required; overcommit; socket group for a local spoke; no passwords in URLs', async () => {
  const { value } = await evaluate('localHub');
  const s = service(value, 'narhub');
  // Restarting Redis does not restart (or stop) the cache.
  assert.deepEqual(s.wants, ['network-online.target', 'redis-narhub.service']);
  assert.deepEqual(s.after, ['network-online.target', 'redis-narhub.service']);
  assert.equal(s.requires, undefined);
  assert.equal(value.redisVmOverCommit, true);
  // The spoke beside the hub reaches the socket (mode 660) through the server's group.
  assert.deepEqual(value.users['narhub-spoke']?.extraGroups, ['redis-narhub']);
  const spoke = service(value, 'narhub-spoke');
  assert.deepEqual(spoke.wants, ['network-online.target', 'redis-narhub.service']);
  assert.ok(spoke.after.includes('redis-narhub.service'));
  assert.ok((spoke.serviceConfig.ExecStart as string).includes(`--redis-url '${SOCKET_URL}'`));

  // A spoke elsewhere joins no group.
  assert.deepEqual((await evaluate('spokePlain')).value.users['narhub-spoke']?.extraGroups, []);

  const refused = await failedAssertions('redisUrlWithPassword');
  assert.ok(
    refused.some((m) => /settings\.hub\.redisUrl carries a password/.test(m)),
    refused.join('\n'),
  );
  assert.ok(
    refused.some((m) => /narhub-spoke\.redisUrl carries a password/.test(m)),
    refused.join('\n'),
  );
  assert.ok(
    (await failedAssertions('redisWithoutPassword')).some((m) =>
      /hub\.redis\.port exposes Redis over TCP: set services\.narhub\.hub\.redis\.passwordFile/.test(m),
    ),
  );
});

test('shared directories are refused as dataDir or storage.path', async () => {
  for (const scenario of ['sharedDataDir', 'sharedStoragePath']) {
    const refused = await failedAssertions(scenario);
    assert.ok(
      refused.some((m) => /dataDir and storage\.path must each be a directory of narhub's own/.test(m)),
      `${scenario}: ${refused.join('\n')}`,
    );
  }
});

test('narhub-admin runs the CLI through systemd-run with the unit’s user, environment and credentials', async (t) => {
  const dir = await makeTempDir(t);
  const secrets = join(dir, 'secrets');
  const dataDir = join(dir, 'data');
  await mkdir(secrets);
  await mkdir(dataDir);
  await writeFile(join(secrets, 'main.secret'), `${formatSecretKey(generateKeyPair('main-admin-1').secret)}\n`);
  await writeFile(join(secrets, 's3-access-key-id'), 'AKIAADMINTEST\n');
  await writeFile(join(secrets, 's3-secret-access-key'), 'admin-secret\n');
  const { value } = await evaluate('admin', { secretsDir: secrets, dataDir });
  assert.deepEqual(value.failedAssertions, []);
  const wrapperText = value.adminWrapper.find((w) => w.includes('systemd-run'));
  assert.ok(wrapperText, 'the narhub-admin wrapper');
  const shimPath = /--\s+\\\n\s*(\/nix\/store\/\S+-narhub-admin-shim)\s+\\\n\s*"\$@"/.exec(wrapperText)?.[1];
  assert.ok(shimPath && value.scripts[shimPath], 'the shim the wrapper runs');

  // systemd-run, as far as this test needs it: credentials copied into a directory of the
  // transient unit's own, the environment set, the working directory, then the command.
  const calls = join(dir, 'systemd-run-argv');
  const systemdRun = join(dir, 'systemd-run');
  await writeFile(
    systemdRun,
    `#!/bin/bash
set -eu
printf '%s\\n' "$@" >> ${calls}
creds=$(mktemp -d); envs=(); cwd=/
while [ "$1" != -- ]; do
  case "$1" in
    --property=LoadCredential=*) spec=\${1#--property=LoadCredential=}; cp "\${spec#*:}" "$creds/\${spec%%:*}" ;;
    --setenv=*) envs+=("\${1#--setenv=}") ;;
    --working-directory=*) cwd=\${1#--working-directory=} ;;
  esac
  shift
done
shift
cd "$cwd"
exec env -i "\${envs[@]}" CREDENTIALS_DIRECTORY="$creds" bash "$@"
`,
    { mode: 0o755 },
  );
  const narhub = join(dir, 'narhub');
  await writeFile(narhub, `#!/bin/sh\nexec ${process.execPath} ${CLI_PATH} "$@"\n`, { mode: 0o755 });
  const shim = join(dir, 'shim');
  const config = join(dir, 'config.json');
  await writeFile(config, JSON.stringify(value.generatedConfig));
  await writeFile(
    shim,
    value.scripts[shimPath]!.replaceAll(`${PACKAGE}/bin/narhub`, narhub).replaceAll(CHECKED_CONFIG, config),
  );
  const replace = { [`${SYSTEMD}/bin/systemd-run`]: systemdRun, [shimPath]: shim };
  // The admin commands talk to the running service ($NARHUB_SERVER, with the admin token the first
  // serve wrote into the data directory): a server on this data directory stands in for the unit.
  assert.ok(wrapperText.includes(`--setenv='NARHUB_SERVER=http://127.0.0.1:8081'`), 'the service address');
  const server = await startServer(t, { dataDir });
  // The shim needs a coreutils mktemp; the stub store path of the unit's PATH does not exist.
  const admin = (...args: string[]) =>
    runScript(
      wrapperText
        .replace(/--setenv='PATH=[^']*'/, `--setenv='PATH=${process.env.PATH}'`)
        .replace(/--setenv='NARHUB_SERVER=[^']*'/, `--setenv='NARHUB_SERVER=${server.url}'`),
      { PATH: process.env.PATH },
      args,
      replace,
    );

  const created = admin('token', 'create', '--cache', '*', '--perm', 'read', '--name', 'from admin');
  assert.equal(created.status, 0, created.stderr);
  assert.match(created.stdout, /^nh_\S+\n$/);
  const listed = admin('token', 'list', '--json');
  assert.equal(listed.status, 0, listed.stderr);
  assert.ok(listed.stdout.includes('from admin'), listed.stdout);

  const argv = (await readFile(calls, 'utf8')).split('\n');
  for (const flag of [
    '--pipe',
    '--wait',
    '--collect',
    '--service-type=exec',
    '--expand-environment=no',
    '--property=User=narhub',
    '--property=Group=narhub',
    '--property=UMask=0077',
    `--working-directory=${dataDir}`,
    `--property=LoadCredential=caches.main.signingKeyFile:${join(secrets, 'main.secret')}`,
    `--property=LoadCredential=storage.accessKeyIdFile:${join(secrets, 's3-access-key-id')}`,
    `--setenv=HOME=${dataDir}`,
    '--setenv=NODE_ENV=production',
    `--setenv=NARHUB_SERVER=${server.url}`,
  ])
    assert.ok(argv.includes(flag), `${flag} in ${argv.join(' ')}`);
  // Arguments reach narhub unexpanded, after the config.
  const last = argv.lastIndexOf('--');
  assert.deepEqual(argv.slice(last + 1, last + 5), [shim, 'token', 'list', '--json']);
});

test('mistakes are refused at evaluation, or by check-config at build time', async (t) => {
  const dir = await makeTempDir(t);
  assert.match(await evaluationError('secretInStore'), /signingKeyFile[\s\S]*not of type[\s\S]*not in the Nix store/);

  const expectations: Record<string, RegExp> = {
    badCacheName: /services\.narhub\.caches: a cache name is 1-63 of a-z/,
    s3HalfCredentials: /accessKeyIdFile and secretAccessKeyFile go together/,
    s3WithoutBucket: /storage\.type = "s3" needs services\.narhub\.settings\.storage\.bucket/,
    spokeTwoRedisUrls: /exactly one of redisUrl and redisUrlFile/,
    badListen: /settings\.listen must be HOST:PORT or \[IPv6\]:PORT, not "everywhere"/,
  };
  for (const [scenario, message] of Object.entries(expectations)) {
    const refused = await failedAssertions(scenario);
    assert.ok(
      refused.some((m) => message.test(m)),
      `${scenario}: ${JSON.stringify(refused)}`,
    );
  }

  // Evaluates (settings are freeform), but the build-time check names the typo.
  const typo = (await evaluate('settingsTypo')).value;
  assert.deepEqual(typo.failedAssertions, []);
  const res = await checkConfig(dir, typo.generatedConfig, '--no-secrets');
  assert.equal(res.code, 1);
  assert.match(res.stderr, /maxNarSiz/);
  assert.equal(res.stdout, '');
});

test("the flake's nixosModules.default runs the flake's package", async () => {
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
