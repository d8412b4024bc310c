// Drives the real Nix client (Debian 12's 2.8, or a current one: modern-nix.ts) with an isolated
// configuration per environment.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { NixClient } from './modern-nix.js';
import { makeTempDir, type Cleanup } from './tmp.js';

const debug = process.env.NARHUB_E2E_DEBUG === '1';
const DEFAULT_TIMEOUT_MS = 120_000;

export interface NetrcEntry {
  host: string;
  password: string;
  login?: string;
}

export interface NixEnvOptions {
  /** Entries for `<confDir>/netrc`; `netrc-file` is set only when given. */
  netrc?: NetrcEntry[];
  /** `trusted-public-keys`; left unset (Nix's default) when not given. */
  trustedPublicKeys?: string[];
  /** `substituters`; empty when not given, so nothing reaches for cache.nixos.org. */
  substituters?: string[];
  /** Extra nix.conf lines. */
  extraConf?: string[];
  /** A current Nix client instead of the machine's 2.8 (`nix` and friends come from its binDir). */
  client?: NixClient;
}

export interface RunOptions {
  cwd?: string;
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface NixEnv {
  /** Environment for Nix commands: NIX_CONF_DIR, fresh XDG dirs, no proxies. */
  env: NodeJS.ProcessEnv;
  /** NIX_CONF_DIR, holding nix.conf (and netrc when requested). */
  confDir: string;
  /** Root temp dir of this environment; removed after the test. */
  dir: string;
  /** Scratch dir for .nix files, keys and the like. */
  workDir: string;
  /** Runs a command with this env; rejects (stdout and stderr in the message) unless it exits 0. */
  run(cmd: string, args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Runs a command with this env and reports how it ended; never rejects on a non-zero exit. */
  tryRun(cmd: string, args: string[], opts?: RunOptions): Promise<RunResult>;
  /** A fresh, not yet existing path under this env's dir, e.g. for a chroot store. */
  freshPath(name: string): string;
}

function describe(cmd: string, args: string[], res: RunResult): string {
  return (
    `${cmd} ${args.map((a) => (/[\s'"]/.test(a) ? JSON.stringify(a) : a)).join(' ')} ` +
    `exited with ${res.code ?? `signal ${res.signal}`}\n--- stdout ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`
  );
}

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv, opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (debug) process.stderr.write(`[nix] ${cmd} ${args.join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const res: RunResult = { code, signal, stdout, stderr };
      if (debug) process.stderr.write(`[nix] exit ${code}\n${stderr}`);
      if (timedOut) reject(new Error(`timed out after ${timeoutMs} ms: ${describe(cmd, args, res)}`));
      else resolve(res);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Creates an isolated Nix configuration: its own NIX_CONF_DIR, XDG_CACHE_HOME and netrc. */
export async function createNixEnv(t: Cleanup, opts: NixEnvOptions = {}): Promise<NixEnv> {
  const dir = await makeTempDir(t, 'narhub-nix-');
  const confDir = join(dir, 'conf');
  const workDir = join(dir, 'work');
  const xdg = {
    cache: join(dir, 'xdg-cache'),
    config: join(dir, 'xdg-config'),
    data: join(dir, 'xdg-data'),
    state: join(dir, 'xdg-state'),
  };
  for (const d of [confDir, workDir, ...Object.values(xdg)]) await mkdir(d, { recursive: true });

  const conf = [
    'experimental-features = nix-command flakes',
    'sandbox = false',
    'build-users-group =',
    `substituters = ${(opts.substituters ?? []).join(' ')}`,
    // Fail fast instead of retrying 5 times when a test expects an error.
    'download-attempts = 2',
  ];
  if (opts.netrc !== undefined) {
    const netrcFile = join(confDir, 'netrc');
    const lines = opts.netrc.map((e) => `machine ${e.host} login ${e.login ?? 'x'} password ${e.password}\n`);
    await writeFile(netrcFile, lines.join(''), { mode: 0o600 });
    conf.push(`netrc-file = ${netrcFile}`);
  }
  if (opts.trustedPublicKeys !== undefined) {
    conf.push(`trusted-public-keys = ${opts.trustedPublicKeys.join(' ')}`);
  }
  if (opts.client !== undefined) {
    // A newer Nix must never open the machine's /nix: it would upgrade the database 2.8 uses.
    // It gets a store of its own; building there runs in Nix's sandbox, with the host's /bin/sh.
    conf.push(`store = ${join(dir, 'store')}`, 'sandbox-paths = /bin /lib /lib64 /usr');
  }
  conf.push(...(opts.extraConf ?? []));
  await writeFile(join(confDir, 'nix.conf'), `${conf.join('\n')}\n`);

  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) {
    if (/^(NIX_REMOTE|NIX_PATH|NIX_USER_CONF_FILES|NIX_CONFIG|http_proxy|https_proxy|all_proxy)$/i.test(k)) {
      delete env[k];
    }
  }
  Object.assign(env, {
    NIX_CONF_DIR: confDir,
    XDG_CACHE_HOME: xdg.cache,
    XDG_CONFIG_HOME: xdg.config,
    XDG_DATA_HOME: xdg.data,
    XDG_STATE_HOME: xdg.state,
    NO_PROXY: '127.0.0.1,localhost',
    no_proxy: '127.0.0.1,localhost',
  });
  if (opts.client !== undefined) env.PATH = `${opts.client.binDir}:${env.PATH ?? ''}`;

  let counter = 0;
  return {
    env,
    confDir,
    dir,
    workDir,
    tryRun: (cmd, args, runOpts) => exec(cmd, args, env, runOpts),
    run: async (cmd, args, runOpts) => {
      const res = await exec(cmd, args, env, runOpts);
      if (res.code !== 0) throw new Error(describe(cmd, args, res));
      return res;
    },
    freshPath: (name) => join(dir, `${name}-${++counter}`),
  };
}

export interface Closure {
  /** The top output path. */
  top: string;
  /** All output paths of the closure, dependencies first (leaf, mid, top). */
  paths: string[];
  /** The derivations, in the same order as `paths`. */
  drvs: string[];
  /** The random nonce baked into every derivation. */
  nonce: string;
  /** A line the builder of each derivation echoes, in the same order; ends up in its build log. */
  logLines: string[];
}

function storeName(label: string): string {
  return label.replace(/[^A-Za-z0-9+\-._?=]/g, '-').replace(/^\.+/, '') || 'x';
}

/**
 * Builds a fresh three-derivation closure into /nix/store with /bin/sh builders:
 * top (dir with a symlink to mid) -> mid (dir with leaf's path in a file, plus an executable) -> leaf (file).
 * Every call uses a new nonce, so every test gets paths the cache has never seen. With
 * `midBlobBytes`, mid also holds that many random bytes (`blob`): a NAR that streams.
 */
export async function buildClosure(
  nix: NixEnv,
  label: string,
  options: { midBlobBytes?: number } = {},
): Promise<Closure> {
  const nonce = randomBytes(8).toString('hex');
  // Random bytes in mid (`blob`), so its NAR is as large as asked and compresses little.
  const blob = options.midBlobBytes ? `head -c ${options.midBlobBytes} /dev/urandom > $out/blob; ` : '';
  const name = storeName(label);
  const names = ['leaf', 'mid', 'top'].map((n) => `${name}-${n}`);
  const logLines = names.map((n) => `narhub-build-log-${nonce}-${n}`);
  const expr = `
let
  mk = name: script: deps: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" ("export PATH=/usr/bin:/bin; echo narhub-build-log-${nonce}-" + name + "; " + script) ];
  } // deps);
  leaf = mk "${names[0]}" "echo leaf-${nonce} > $out" {};
  mid = mk "${names[1]}" ("mkdir $out; ${blob}echo $leaf > $out/leaf-path; "
    + "printf '#!/bin/sh\\\\necho ${nonce}\\\\n' > $out/run; chmod +x $out/run") { inherit leaf; };
  top = mk "${names[2]}" "mkdir $out; ln -s $mid $out/mid; echo top-${nonce} > $out/data" { inherit mid; };
in { inherit leaf mid top; }
`;
  const file = join(nix.workDir, `${name}-${nonce}.nix`);
  await writeFile(file, expr);

  const attrs = ['-A', 'leaf', '-A', 'mid', '-A', 'top'];
  const drvOut = await nix.run('nix-instantiate', [file, ...attrs]);
  const built = await nix.run('nix-build', ['--no-out-link', file, ...attrs]);
  const pick = (text: string, suffix: string, n: string): string => {
    const hit = text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.startsWith('/nix/store/') && l.endsWith(`-${n}${suffix}`));
    if (hit === undefined) throw new Error(`no ${n}${suffix} in output:\n${text}`);
    return hit;
  };
  const paths = names.map((n) => pick(built.stdout, '', n));
  const drvs = names.map((n) => pick(drvOut.stdout, '.drv', n));
  const top = paths[2]!;

  const closure = (await nix.run('nix-store', ['-qR', top])).stdout.split('\n').filter((l) => l !== '');
  if (closure.length < 3 || !paths.every((p) => closure.includes(p))) {
    throw new Error(`closure of ${top} is not the 3 built paths:\n${closure.join('\n')}`);
  }
  return { top, paths, drvs, nonce, logLines };
}

export interface SigningKey {
  name: string;
  secretKeyFile: string;
  publicKeyFile: string;
  publicKey: string;
}

/** `nix-store --generate-binary-cache-key NAME sk pk` into the env's work dir. */
export async function generateKey(nix: NixEnv, name: string): Promise<SigningKey> {
  const secretKeyFile = join(nix.workDir, `${name}.sk`);
  const publicKeyFile = join(nix.workDir, `${name}.pk`);
  await nix.run('nix-store', ['--generate-binary-cache-key', name, secretKeyFile, publicKeyFile]);
  const publicKey = (await readFile(publicKeyFile, 'utf8')).trim();
  return { name, secretKeyFile, publicKeyFile, publicKey };
}

/** The 32-character hash part of a store path. */
export function hashPart(storePath: string): string {
  return basename(storePath).slice(0, 32);
}

/**
 * Builds a single path holding `bytes` of random data (incompressible, so the NAR really is that big)
 * plus a small text file. Returns the output path.
 */
export async function buildBigPath(nix: NixEnv, label: string, bytes: number): Promise<string> {
  const nonce = randomBytes(8).toString('hex');
  const name = `${storeName(label)}-big`;
  const expr = `derivation {
  name = "${name}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [
    "-c"
    "export PATH=/usr/bin:/bin; mkdir $out; head -c ${bytes} /dev/urandom > $out/blob; echo ${nonce} > $out/nonce"
  ];
}
`;
  const file = join(nix.workDir, `${name}-${nonce}.nix`);
  await writeFile(file, expr);
  const built = await nix.run('nix-build', ['--no-out-link', file]);
  const out = built.stdout.split('\n').find((l) => l.startsWith('/nix/store/'));
  if (out === undefined) throw new Error(`nix-build printed no path:\n${built.stdout}`);
  return out.trim();
}
