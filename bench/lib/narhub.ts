// A real `narhub serve` child process (the compiled CLI), its admin commands, and its memory.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseLoopDelay, type LoopDelayRecord } from './loop-delay-record.js';
import { cpuSeconds, exec, execOk, stopChild } from './proc.js';
import type { Scope } from './scope.js';
import { listeningUrl } from '../../test/helpers/listening.js';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';

/** dist/bench/lib/narhub.js -> dist/src/cli/main.js */
export const NARHUB_CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Preloaded into every server: reports its event-loop delay once a second on stderr. */
const LOOP_DELAY_MONITOR = new URL('./loop-delay.js', import.meta.url).href;

export interface NarhubOptions {
  /** Used in log and profile file names. */
  label: string;
  dataDir: string;
  /** Where the server's stdout and stderr go (one file). */
  logFile: string;
  /** Config keys besides dataDir and listen (e.g. storage). */
  config?: Record<string, unknown>;
  /** Have the server log every request (`logRequests`) and keep the records (`requests()`). */
  logRequests?: boolean;
  /**
   * The narhub CLI to run (default: this build's): another build's `dist/src/cli/main.js`, to
   * compare two builds side by side in one run.
   */
  cli?: string;
  /** Write V8 CPU profiles of the server into `<this>/<label>/` when it stops. */
  cpuProfileDir?: string | undefined;
}

export interface RequestRecord {
  method: string;
  url: string;
  /** Epoch milliseconds of the server's `incoming request` record. */
  start: number;
  /** Epoch milliseconds of its `request completed` record, once there is one. */
  end?: number;
  status?: number;
}

export interface Narhub {
  label: string;
  url: string;
  pid: number;
  dataDir: string;
  /** The bootstrap admin token (every cache, every right). */
  adminToken: string;
  /** Runs a data-directory admin command (`cache create …`) against this server's data. */
  cli(args: string[]): Promise<string>;
  /** Creates a public cache and returns its substituter URL. */
  createCache(name: string): Promise<string>;
  /** `<name>-1:<base64>`: the public key a client must trust for this cache. */
  publicKey(cache: string): Promise<string>;
  /** Peak resident set size of the server process so far (VmHWM), bytes. */
  peakRss(): Promise<number>;
  /** Current resident set size (VmRSS), bytes. */
  rss(): Promise<number>;
  /** CPU time (user + system, all threads) the server has used so far, seconds. */
  cpuSeconds(): Promise<number>;
  /** The event loop's delay, one record per second since the start. */
  loopDelays(): LoopDelayRecord[];
  /** With `logRequests`: each request's start and end as the server logged them, oldest first. */
  requests(): RequestRecord[];
  stop(): Promise<void>;
}

async function statusField(pid: number, field: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text);
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** Starts `narhub serve` on a free port; resolves once it logs `listening`. */
export async function startNarhub(scope: Scope, opts: NarhubOptions): Promise<Narhub> {
  await mkdir(opts.dataDir, { recursive: true });
  const configFile = join(opts.dataDir, '..', `${opts.label}-config.json`);
  const config = {
    ...opts.config,
    ...(opts.logRequests ? { logRequests: true } : {}),
    dataDir: opts.dataDir,
    listen: '127.0.0.1:0',
  };
  await writeFile(configFile, JSON.stringify(config, null, 2));
  // One profile per thread (the codec threads too), named by Node, in a directory per server.
  const nodeArgs =
    opts.cpuProfileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${join(opts.cpuProfileDir, opts.label)}`];
  const child = spawn(
    process.execPath,
    [
      ...NODE_FLAGS,
      ...nodeArgs,
      '--import',
      LOOP_DELAY_MONITOR,
      opts.cli ?? NARHUB_CLI,
      'serve',
      '--config',
      configFile,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const log = createWriteStream(opts.logFile);
  const loopDelays: LoopDelayRecord[] = [];
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (line) => {
    const record = parseLoopDelay(line);
    if (record !== undefined) loopDelays.push(record);
    else log.write(`${line}\n`);
  });
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= stopChild(child, 'SIGTERM').then(() => new Promise<void>((r) => log.end(() => r()))));
  scope.after(stop);

  const requests = opts.logRequests ? createRequestLog() : undefined;
  if (requests) createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', requests.hear);
  const url = await listeningUrl(child, {
    timeoutMs: 60_000,
    onOutput: (d) => log.write(d),
    failure: (why) => new Error(`narhub serve (${opts.label}) ${why}; see ${opts.logFile}`),
  });

  const adminToken = (await readFile(join(opts.dataDir, 'admin-token'), 'utf8')).trim();
  const cli = async (args: string[]) =>
    (await execOk(process.execPath, [opts.cli ?? NARHUB_CLI, ...args, '--config', configFile], { timeoutMs: 120_000 }))
      .stdout;
  return {
    label: opts.label,
    url,
    pid: child.pid!,
    dataDir: opts.dataDir,
    adminToken,
    cli,
    async createCache(name) {
      await cli(['cache', 'create', name]);
      return `${url}/${name}`;
    },
    async publicKey(cache) {
      const info = JSON.parse(await cli(['cache', 'info', cache, '--json'])) as { publicKeys: string[] };
      const key = info.publicKeys[info.publicKeys.length - 1];
      if (key === undefined) throw new Error(`cache ${cache} has no public key`);
      return key;
    },
    peakRss: () => statusField(child.pid!, 'VmHWM'),
    rss: () => statusField(child.pid!, 'VmRSS'),
    cpuSeconds: () => cpuSeconds(child.pid!),
    loopDelays: () => loopDelays,
    requests: () => requests?.records ?? [],
    stop,
  };
}

/** True when this build has `narhub push` (src/push and the CLI command). */
export async function hasNarhubPush(): Promise<boolean> {
  try {
    await readFile(fileURLToPath(new URL('../../src/push/push.js', import.meta.url)));
  } catch {
    return false;
  }
  const res = await exec(process.execPath, [NARHUB_CLI, 'push'], { timeoutMs: 30_000 });
  return `${res.stdout}${res.stderr}`.includes('narhub push');
}

/** Pairs the server's `incoming request` and `request completed` log records by request id. */
function createRequestLog(): { records: RequestRecord[]; hear(line: string): void } {
  const records: RequestRecord[] = [];
  const open = new Map<string, RequestRecord>();
  return {
    records,
    hear(line) {
      if (!line.startsWith('{')) return;
      let rec: {
        msg?: unknown;
        reqId?: unknown;
        time?: unknown;
        req?: { method?: unknown; url?: unknown };
        res?: { statusCode?: unknown };
      };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        return;
      }
      if (typeof rec.reqId !== 'string' || typeof rec.time !== 'number') return;
      if (rec.msg === 'incoming request') {
        const r: RequestRecord = {
          method: String(rec.req?.method ?? ''),
          url: String(rec.req?.url ?? ''),
          start: rec.time,
        };
        records.push(r);
        open.set(rec.reqId, r);
      } else if (rec.msg === 'request completed') {
        const r = open.get(rec.reqId);
        if (r === undefined) return;
        open.delete(rec.reqId);
        r.end = rec.time;
        if (typeof rec.res?.statusCode === 'number') r.status = rec.res.statusCode;
      }
    },
  };
}
