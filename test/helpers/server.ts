// Starts the real `narhub` CLI as a child process and drives its admin commands.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { listeningUrl } from './listening.js';
import { makeTempDir, type Cleanup } from './tmp.js';

/** The compiled CLI: dist/test/helpers/server.js -> dist/src/cli/main.js (NARHUB_CLI overrides). */
export const CLI_PATH = process.env.NARHUB_CLI ?? fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Set NARHUB_E2E_DEBUG=1 to echo server output and CLI invocations to stderr. */
const debug = process.env.NARHUB_E2E_DEBUG === '1';

const LISTEN_TIMEOUT_MS = 30_000;
const KILL_AFTER_MS = 10_000;
const CLI_TIMEOUT_MS = 30_000;

export interface StartServerOptions {
  /** Reuse an existing data dir (e.g. to test restarts); a fresh temp dir otherwise. */
  dataDir?: string;
  /** Extra arguments for `narhub serve`. */
  args?: string[];
  /** Extra environment variables (merged over process.env). */
  env?: NodeJS.ProcessEnv;
  /** Start node with narhub's V8 flags, as `npm start` and the Nix package do (default true). */
  nodeFlags?: boolean;
  /** Soft and hard limit of open file descriptors (`ulimit -n`) of the server and its children. */
  fdLimit?: number;
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  dataDir: string;
  adminToken: string;
  /** Public key of the `main` cache, `main-1:<base64>`. */
  publicKey: string;
  /** Everything the server wrote to stdout so far. */
  stdout(): string;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM (or the given signal), then SIGKILL after 10 s; resolves to the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  dataDir?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeoutMs?: number;
}

/** Runs `node dist/src/cli/main.js ARGS [--data-dir DIR]`; never rejects on a non-zero exit. */
export function runCli(args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  const argv = [CLI_PATH, ...args];
  if (opts.dataDir !== undefined) argv.push('--data-dir', opts.dataDir);
  if (debug) process.stderr.write(`[runCli] narhub ${argv.slice(1).join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, {
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `narhub ${args.join(' ')} timed out after ${opts.timeoutMs ?? CLI_TIMEOUT_MS} ms\n` +
            `stdout:\n${stdout}\nstderr:\n${stderr}`,
        ),
      );
    }, opts.timeoutMs ?? CLI_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (debug) process.stderr.write(`[runCli] exit ${code}\n${stdout}${stderr}`);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Like runCli, but rejects (with all output in the message) unless the exit code is 0. */
export async function runCliOk(args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  const res = await runCli(args, opts);
  if (res.code !== 0) {
    throw new Error(`narhub ${args.join(' ')} exited with ${res.code}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
  }
  return res;
}

/** Parses each line of `text` as JSON, skipping lines that are not JSON objects. */
export function jsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    const s = line.trim();
    if (!s.startsWith('{')) continue;
    try {
      const v: unknown = JSON.parse(s);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) out.push(v as Record<string, unknown>);
    } catch {
      // a plain line that happens to start with "{"
    }
  }
  return out;
}

export interface CacheInfo {
  name: string;
  private: boolean;
  priority: number;
  publicKeys: string[];
}

export async function cacheInfo(dataDir: string, name: string): Promise<CacheInfo> {
  const res = await runCliOk(['cache', 'info', name, '--json'], { dataDir });
  try {
    return JSON.parse(res.stdout) as CacheInfo;
  } catch (err) {
    throw new Error(`cache info ${name} --json printed no JSON: ${String(err)}\nstdout:\n${res.stdout}`);
  }
}

export interface CreatedToken {
  id: string;
  token: string;
}

/** `narhub token create --cache C --perm P --json`. */
export async function createToken(
  dataDir: string,
  cache: string,
  perm: 'read' | 'write' | 'admin',
  extra: string[] = [],
): Promise<CreatedToken> {
  const res = await runCliOk(['token', 'create', '--cache', cache, '--perm', perm, '--json', ...extra], {
    dataDir,
  });
  let parsed: { id?: unknown; token?: unknown };
  try {
    parsed = JSON.parse(res.stdout) as { id?: unknown; token?: unknown };
  } catch (err) {
    throw new Error(`token create --json printed no JSON: ${String(err)}\nstdout:\n${res.stdout}`);
  }
  if (typeof parsed.token !== 'string' || (typeof parsed.id !== 'string' && typeof parsed.id !== 'number')) {
    throw new Error(`token create --json: expected {id, token}, got ${res.stdout}`);
  }
  return { id: String(parsed.id), token: parsed.token };
}

function waitForExit(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/**
 * Node flags for the servers and spokes tests start: the ones narhub ships with (NODE_FLAGS),
 * then any from `$NARHUB_NODE_ARGS` (space-separated),
 * e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them in a benchmark (Node refuses
 * `--cpu-prof` in NODE_OPTIONS).
 */
export function nodeArgs(): string[] {
  return [...NODE_FLAGS, ...(process.env.NARHUB_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')];
}

/** Spawns `narhub serve` on a free port and waits for its `listening` log line. */
export async function startServer(t: Cleanup, opts: StartServerOptions = {}): Promise<RunningServer> {
  const dataDir = opts.dataDir ?? (await makeTempDir(t, 'narhub-data-'));
  const flags = opts.nodeFlags === false ? nodeArgs().filter((a) => !NODE_FLAGS.includes(a)) : nodeArgs();
  const argv = [...flags, CLI_PATH, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...(opts.args ?? [])];
  // Under a descriptor limit, through a shell that sets it and then becomes node (signals reach node).
  const [command, commandArgs] =
    opts.fdLimit === undefined
      ? [process.execPath, argv]
      : ['/bin/sh', ['-c', `ulimit -n ${opts.fdLimit} && exec "$@"`, 'sh', process.execPath, ...argv]];
  const child = spawn(command, commandArgs, {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    err += d;
    if (debug) process.stderr.write(`[server:err] ${d}`);
  });

  let stopping: Promise<number | null> | undefined;
  const stop = (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (stopping) return stopping;
    stopping = (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = waitForExit(child);
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    })();
    return stopping;
  };
  t.after(async () => {
    await stop();
  });

  const url = await listeningUrl(child, {
    timeoutMs: LISTEN_TIMEOUT_MS,
    onOutput: (d) => {
      out += d;
      if (debug) process.stderr.write(`[server] ${d}`);
    },
    failure: (why) => new Error(`narhub serve ${why}\nstdout:\n${out}\nstderr:\n${err}`),
  });

  let adminToken: string;
  try {
    adminToken = (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim();
  } catch (e) {
    throw new Error(`narhub serve wrote no ${join(dataDir, 'admin-token')}: ${String(e)}\nstdout:\n${out}`);
  }
  const info = await cacheInfo(dataDir, 'main');
  const publicKey = info.publicKeys.find((k) => k.startsWith('main-1:'));
  if (publicKey === undefined) {
    throw new Error(`cache info main --json has no main-1 key: ${JSON.stringify(info)}`);
  }

  return {
    url,
    dataDir,
    adminToken,
    publicKey,
    stdout: () => out,
    stderr: () => err,
    stop,
  };
}
