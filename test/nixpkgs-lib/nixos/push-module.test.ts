// `services.narhub-push` (nixos/push.nix), evaluated with the real NixOS module system through
// eval-module.nix, like module-eval.test.ts; then what the module wrote is run as written, with
// this build of narhub in place of the package, against a real narhub and the real Nix 2.8 store:
// the unit's ExecStart (with %d, the credentials directory, and /var/lib/narhub-push swapped for
// temporary ones) and the post-build-hook script. What only a VM shows (systemd applying the
// hardening, nix-daemon running the hook) is not here: these machines have no KVM, and the
// commands run without NIX_REMOTE=daemon, since no nix-daemon runs here.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Cleanup } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/hub.js';
import { getNarinfo } from '../../helpers/http.js';
import { createNixEnv, type NixEnv } from '../../helpers/nix.js';
import { evalNixJson, nixpkgsLib } from '../../helpers/nix-eval.js';
import { CLI_PATH, createToken, startServer, type RunningServer } from '../../helpers/server.js';
import { makeTempDir } from '../../helpers/tmp.js';

const PACKAGE = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-narhub-0.1.0';
const FLAKE_PACKAGE = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-narhub-from-flake-0.1.0';
const STATE = '/var/lib/narhub-push';
const CACHE_URL = 'http://127.0.0.1:8080/main';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

interface Unit {
  serviceConfig: Record<string, Json>;
  environment: Record<string, string>;
  after: string[];
  wantedBy: string[];
}

interface Evaluated {
  failedAssertions: string[];
  services: { 'narhub-push': Unit | null; narhub: Unit | null };
  postBuildHook: { path: string; text: string } | null;
  nixSettings: Record<string, Json>;
  users: Record<string, Record<string, Json>>;
  groups: Record<string, Json>;
  tmpfiles: string[];
}

async function evaluate(scenario: string): Promise<Evaluated> {
  return (await evalNixJson<Evaluated>('eval-module.nix', { nixpkgsLib: nixpkgsLib(), scenario })).value;
}

function pushUnit(value: Evaluated): Unit {
  const unit = value.services['narhub-push'];
  assert.ok(unit, 'systemd.services.narhub-push is defined');
  return unit;
}

/** The hardening of nixos/hardening.nix, which every narhub unit starts from. */
const HARDENING: Record<string, Json> = {
  NoNewPrivileges: true,
  ProtectSystem: 'strict',
  ProtectHome: true,
  PrivateTmp: true,
  PrivateDevices: true,
  ProtectKernelTunables: true,
  ProtectKernelModules: true,
  ProtectControlGroups: true,
  ProtectProc: 'invisible',
  RestrictNamespaces: true,
  SystemCallFilter: ['@system-service', '~@privileged'],
  CapabilityBoundingSet: '',
  RestrictAddressFamilies: ['AF_INET', 'AF_INET6', 'AF_UNIX'],
  UMask: '0077',
};

/** Runs a command line the module wrote, as bash would, with this build and temporary paths. */
function runAsWritten(
  t: Cleanup,
  line: string,
  env: NodeJS.ProcessEnv,
  swap: Record<string, string>,
): { output(): string; exited: Promise<number | null> } {
  let script = line;
  for (const [from, to] of Object.entries({ [`${PACKAGE}/bin/narhub`]: `${process.execPath} ${CLI_PATH}`, ...swap }))
    script = script.replaceAll(from, to);
  const child = spawn('bash', ['-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { output: () => out, exited };
}

/** A server, a token file as LoadCredential hands it over (`%d/token`), and a state directory. */
async function setUp(t: Cleanup): Promise<{ server: RunningServer; credentials: string; state: string; nix: NixEnv }> {
  const server = await startServer(t);
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const dir = await makeTempDir(t, 'narhub-push-unit-');
  const credentials = join(dir, 'credentials');
  await mkdir(credentials);
  await writeFile(join(credentials, 'token'), token, { mode: 0o600 });
  const state = join(dir, 'state');
  await mkdir(state);
  return { server, credentials, state, nix: await createNixEnv(t) };
}

async function inCache(server: RunningServer, path: string): Promise<void> {
  await waitFor(
    `${path} in the cache`,
    async () => (await getNarinfo(`${server.url}/main`, path)).status === 200,
    60_000,
  );
}

test("narhub-push watch-store: hardened root unit, writes its dir and Nix's db dir; ExecStart pushes", async (t) => {
  const value = await evaluate('pushWatchStore');
  assert.deepEqual(value.failedAssertions, []);
  const unit = pushUnit(value);
  for (const [k, v] of Object.entries(HARDENING)) assert.deepEqual(unit.serviceConfig[k], v, `serviceConfig.${k}`);
  assert.equal(unit.serviceConfig.User, 'root');
  assert.deepEqual(unit.serviceConfig.ReadWritePaths, ['/nix/var/nix/db']);
  assert.equal(unit.serviceConfig.StateDirectory, 'narhub-push');
  assert.deepEqual(unit.serviceConfig.LoadCredential, ['token:/var/lib/secrets/push-token']);
  assert.equal(unit.environment.NIX_REMOTE, 'daemon');
  assert.ok(unit.after.includes('nix-daemon.socket'));
  assert.deepEqual(unit.wantedBy, ['multi-user.target']);
  const execStart = unit.serviceConfig.ExecStart as string;
  assert.equal(
    execStart,
    `${PACKAGE}/bin/narhub watch-store ${CACHE_URL} --state ${STATE}/watch-store --token-file %d/token --jobs 4 ` +
      `--include 'narhub-push-eval-*'`,
  );
  assert.equal(value.postBuildHook, null, 'no post-build-hook in watch-store mode');
  assert.equal(value.users['narhub-push'], undefined, 'no user of its own: it runs as root');
  assert.equal(value.services.narhub, null);

  const { server, credentials, state, nix } = await setUp(t);
  const daemon = runAsWritten(t, execStart, nix.env, {
    [CACHE_URL]: `${server.url}/main`,
    '%d': credentials,
    [STATE]: state,
  });
  await waitFor('watch-store to watch', async () => /^watch-store: watching /m.test(daemon.output()), 60_000);
  const dir = join(nix.workDir, 'content');
  await mkdir(dir);
  await writeFile(join(dir, 'file'), randomBytes(16).toString('hex'));
  const name = `narhub-push-eval-${randomBytes(4).toString('hex')}`;
  const added = (await nix.run('nix', ['store', 'add-path', dir, '--name', name])).stdout.trim();
  await inCache(server, added);
});

test('narhub-push post-build-hook: the hook queues, push-daemon as narhub-push; builds reach the cache', async (t) => {
  const value = await evaluate('pushHook');
  assert.deepEqual(value.failedAssertions, []);
  const unit = pushUnit(value);
  for (const [k, v] of Object.entries(HARDENING)) assert.deepEqual(unit.serviceConfig[k], v, `serviceConfig.${k}`);
  assert.equal(unit.serviceConfig.User, 'narhub-push');
  assert.equal(unit.serviceConfig.Group, 'narhub-push');
  assert.deepEqual(unit.serviceConfig.ReadWritePaths, [], "no write access to Nix's database");
  assert.equal(value.users['narhub-push']?.isSystemUser, true);
  assert.ok('narhub-push' in value.groups);
  assert.deepEqual(value.tmpfiles, [`d ${STATE}/queue 0755 narhub-push narhub-push - -`]);
  const execStart = unit.serviceConfig.ExecStart as string;
  assert.equal(
    execStart,
    `${PACKAGE}/bin/narhub push-daemon ${CACHE_URL} --queue ${STATE}/queue --token-file %d/token --jobs 2 ` +
      `--include 'narhub-push-eval-*' --include 'my project-*' --exclude '*.drv' --exclude '*-100%%' ` +
      '--only-built-here --upload-upstream-paths --max-size 2G --max-backoff 1m',
  );
  const hook = value.postBuildHook;
  assert.ok(hook, 'nix.settings.post-build-hook is set');
  assert.equal(value.nixSettings['post-build-hook'], hook.path);
  assert.equal(hook.text, `exec ${PACKAGE}/bin/narhub queue-push --queue ${STATE}/queue\n`);

  const { server, credentials, state, nix } = await setUp(t);
  const name = `narhub-push-eval-${randomBytes(4).toString('hex')}`;
  const file = join(nix.workDir, 'built.nix');
  await writeFile(
    file,
    `derivation { name = "${name}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo built ` +
      `> $out" ]; }`,
  );
  const built = (await nix.run('nix-build', ['--no-out-link', file])).stdout.trim();
  // As nix-daemon runs it after a build (Nix 2.8 leaves $OUT_PATHS empty and sets $DRV_PATH).
  const drv = (await nix.run('nix-instantiate', [file])).stdout.trim();
  const swap = { [CACHE_URL]: `${server.url}/main`, '%d': credentials, [STATE]: state };
  const hookRun = runAsWritten(t, hook.text, { ...nix.env, OUT_PATHS: '', DRV_PATH: drv }, swap);
  assert.equal(await hookRun.exited, 0, hookRun.output());
  assert.match(hookRun.output(), new RegExp(`^queued 1 path in ${state}/queue/`));
  assert.equal((await getNarinfo(`${server.url}/main`, built)).status, 404, 'the hook uploads nothing');

  // systemd turns %% into %.
  runAsWritten(t, execStart.replaceAll('%%', '%'), nix.env, swap);
  await inCache(server, built);
});

test("narhub-push refuses a token in the store and a bad --max-size; the flake's runs the flake package", async () => {
  const refused = async (scenario: string) => {
    await assert.rejects(evaluate(scenario), (err: { stderr?: string }) => {
      assert.match(err.stderr ?? '', /services\.narhub-push\./);
      return true;
    });
  };
  await refused('pushTokenInStore');
  await refused('pushBadMaxSize');

  const flake = pushUnit(await evaluate('flakeModule'));
  assert.ok((flake.serviceConfig.ExecStart as string).startsWith(`${FLAKE_PACKAGE}/bin/narhub watch-store `));
});
