// Helpers for the build hub's e2e tests: spoke processes, the hub API, polling.
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI_PATH, nodeArgs } from './server.js';
import type { Cleanup } from './tmp.js';

const debug = process.env.NARHUB_E2E_DEBUG === '1';

export { freePort } from './ports.js';

/**
 * Polls `fn` until it returns something other than undefined/false; fails with `what` and the last
 * value on timeout.
 */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`,
      );
    await sleep(intervalMs);
  }
}

export interface Api {
  get<T = any>(path: string): Promise<T>;
  post<T = any>(path: string, body?: unknown): Promise<T>;
}

/** A JSON client of `/api/v1` that throws (with the answer) on any non-2xx status. */
export function hubApi(baseUrl: () => string, token: string): Api {
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${baseUrl()}/api/v1${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text === '' ? undefined : JSON.parse(text);
  };
  return { get: (p) => call('GET', p), post: (p, b) => call('POST', p, b ?? {}) };
}

export interface RunningSpoke {
  id: string;
  store: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL after 15 s. */
  stop(): Promise<void>;
  /** SIGKILL at once (a spoke dying mid-build). */
  kill(): Promise<void>;
}

/** Starts `narhub spoke` (the real CLI) with a chroot store of its own. */
export function startSpoke(
  t: Cleanup,
  o: {
    id: string;
    hubUrl: string;
    redisUrl: string;
    token: string;
    store: string;
    env: NodeJS.ProcessEnv;
    systems?: string;
    features?: string;
    extraArgs?: string[];
    /** Runs the spoke (and so its Nix processes and builders) on this CPU only (`taskset`). */
    cpu?: number;
  },
): RunningSpoke {
  const args = [
    ...nodeArgs(),
    CLI_PATH,
    'spoke',
    '--hub',
    o.hubUrl,
    '--redis-url',
    o.redisUrl,
    '--systems',
    o.systems ?? 'x86_64-linux',
    '--token',
    o.token,
    '--store',
    o.store,
    '--id',
    o.id,
  ];
  if (o.features) args.push('--features', o.features);
  args.push(...(o.extraArgs ?? []));
  const [cmd, argv] =
    o.cpu === undefined ? [process.execPath, args] : ['taskset', ['-c', String(o.cpu), process.execPath, ...args]];
  const child = spawn(cmd, argv, { env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (debug) process.stderr.write(`[${o.id}] ${d}`);
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (debug) process.stderr.write(`[${o.id}:err] ${d}`);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const stop = async () => {
    if (gone()) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  t.after(stop);
  return {
    id: o.id,
    store: o.store,
    child,
    output: () => out,
    stop,
    async kill() {
      if (gone()) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}
