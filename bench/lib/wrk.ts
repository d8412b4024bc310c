// wrk runs cycling over a list of URL paths, and the parsing of its report.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { execOk } from './proc.js';

export interface WrkResult {
  requestsPerSecond: number;
  requests: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Non-2xx/3xx answers plus socket errors: must be 0 for a valid run. */
  errors: number;
}

/**
 * A wrk Lua script that requests `paths` in turn, each thread starting at another place in the
 * list.
 */
export async function writeUrlScript(file: string, paths: string[]): Promise<void> {
  const list = paths.map((p) => `  ${JSON.stringify(p)},`).join('\n');
  await writeFile(
    file,
    `local paths = {\n${list}\n}\nlocal i = 0\nlocal threads = 0\n` +
      `function setup(thread)\n  threads = threads + 1\n  thread:set("offset", threads * 7919)\nend\n` +
      `function init(args)\n  i = (offset or 0) % #paths\nend\n` +
      `function request()\n  i = i % #paths + 1\n  return wrk.format("GET", paths[i])\nend\n`,
  );
}

function toMs(value: string, unit: string): number {
  const v = Number(value);
  switch (unit) {
    case 'us':
      return v / 1000;
    case 'ms':
      return v;
    case 's':
      return v * 1000;
    case 'm':
      return v * 60_000;
    default:
      throw new Error(`unknown wrk time unit ${unit}`);
  }
}

function parseWrk(text: string): WrkResult {
  const percentile = (p: string): number => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(text);
    if (!m) throw new Error(`no ${p}% latency in wrk output:\n${text}`);
    return toMs(m[1]!, m[2]!);
  };
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const total = /^\s*(\d+) requests in/m.exec(text);
  const max = /^\s*Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)/m.exec(text);
  if (!rps || !total) throw new Error(`cannot parse wrk output:\n${text}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = sock ? sock.slice(1, 5).reduce((n, v) => n + Number(v), 0) : 0;
  return {
    requestsPerSecond: Number(rps[1]),
    requests: Number(total[1]),
    p50Ms: percentile('50'),
    p90Ms: percentile('90'),
    p99Ms: percentile('99'),
    maxMs: max ? toMs(max[1]!, max[2]!) : NaN,
    errors: (non2xx ? Number(non2xx[1]) : 0) + socketErrors,
  };
}

export interface WrkOptions {
  url: string;
  script: string;
  connections: number;
  threads: number;
  seconds: number;
}

/**
 * One wrk run with `--latency`; throws if any request failed, unless `allowErrors` (then the
 * caller reports `errors`: answers other than 2xx/3xx, such as a server's 503 load shedding).
 */
export async function runWrk(o: WrkOptions & { allowErrors?: boolean }): Promise<WrkResult> {
  const args = [
    `-t${o.threads}`,
    `-c${o.connections}`,
    `-d${o.seconds}s`,
    '--latency',
    '--timeout',
    '10s',
    '-s',
    o.script,
    o.url,
  ];
  const res = await execOk('wrk', args, { timeoutMs: (o.seconds + 60) * 1000 });
  const parsed = parseWrk(res.stdout);
  if (parsed.errors > 0 && !o.allowErrors)
    throw new Error(`wrk against ${o.url}: ${parsed.errors} failed requests\n${res.stdout}`);
  return parsed;
}

/** A wrk run under way, for as long as something else takes (`startWrk`). */
export interface RunningWrk {
  /** Ends the run (SIGINT: wrk then reports what it measured so far) and returns its figures. */
  stop(): Promise<WrkResult>;
}

/**
 * Starts wrk with no end of its own (an hour at most); `stop()` ends it and parses its report,
 * which then covers exactly the time it ran. Throws (from `stop`) if any request failed.
 */
export function startWrk(o: Omit<WrkOptions, 'seconds'>): RunningWrk {
  const args = [
    `-t${o.threads}`,
    `-c${o.connections}`,
    '-d3600s',
    '--latency',
    '--timeout',
    '10s',
    '-s',
    o.script,
    o.url,
  ];
  const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  exited.catch(() => undefined);
  return {
    async stop() {
      child.kill('SIGINT');
      const code = await exited;
      if (code !== 0) throw new Error(`wrk exited with ${code}\n${stdout}\n${stderr}`);
      const parsed = parseWrk(stdout);
      if (parsed.errors > 0) throw new Error(`wrk against ${o.url}: ${parsed.errors} failed requests\n${stdout}`);
      return parsed;
    },
  };
}
