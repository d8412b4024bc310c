// Child processes for the benchmark: run to completion (timed), or keep running until stopped.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';

export interface ExecOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string;
  /** Kill the command (SIGKILL) after this long; 30 minutes by default. */
  timeoutMs?: number;
  /** Write stdout to this file instead of capturing it (for multi-GB output). */
  stdoutFile?: string;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall-clock time from spawn to exit. */
  seconds: number;
}

function describe(cmd: string, args: string[]): string {
  return [cmd, ...args].map((a) => (/[\s'"$&|;]/.test(a) ? JSON.stringify(a) : a)).join(' ');
}

/** Runs a command and reports how it ended; never rejects on a non-zero exit. */
export function exec(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const out = opts.stdoutFile === undefined ? 'pipe' : openSync(opts.stdoutFile, 'w');
    const started = performance.now();
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', out, 'pipe'] });
    } finally {
      if (typeof out === 'number') closeSync(out);
    }
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      // Keep the tail only: some commands (nix copy -v) are chatty.
      stderr = (stderr + d).slice(-64 * 1024);
    });
    const timeoutMs = opts.timeoutMs ?? 30 * 60_000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${describe(cmd, args)}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      if (timedOut) reject(new Error(`${describe(cmd, args)} timed out after ${timeoutMs / 1000} s\n${stderr}`));
      else resolve({ code, signal, stdout, stderr, seconds });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input ?? '');
  });
}

/** Like exec, but rejects (with the output) unless the command exits 0. */
export async function execOk(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const res = await exec(cmd, args, opts);
  if (res.code !== 0) {
    throw new Error(
      `${describe(cmd, args)} exited with ${res.code ?? res.signal}\n` +
        `--- stdout ---\n${res.stdout.slice(-4000)}\n--- stderr ---\n${res.stderr.slice(-4000)}`,
    );
  }
  return res;
}

/** The absolute path of a command on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  const res = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  const path = res.stdout.trim();
  return res.status === 0 && path !== '' ? path : undefined;
}

/** Removes a directory tree, including read-only store paths Nix leaves in chroot stores. */
export async function rmTree(dir: string): Promise<void> {
  await exec('chmod', ['-R', 'u+w', dir]);
  await execOk('rm', ['-rf', dir]);
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Sends `signal`, then SIGKILL after `graceMs`; resolves once the child is gone. */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals = 'SIGTERM',
  graceMs = 15_000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
}

/** CPU time (user + system) a process has used so far, in seconds, from /proc/<pid>/stat. */
export async function cpuSeconds(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** The kernel's USER_HZ, 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

/** Pids whose parent is `pid`. */
export async function childPids(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const text = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) out.push(Number(entry));
  }
  return out;
}

/**
 * CPU seconds (user + system, with reaped children's) of every process below `root`, summed per
 * child of `root`: what each server, spoke or Redis it started has used so far, its helpers
 * (Nix processes, builders) included, and (`own`) the child process itself. Keyed by the child's
 * pid, with its command line.
 */
export async function cpuPerChildTree(
  root: number,
): Promise<Map<number, { cmd: string; seconds: number; own: number }>> {
  const procs = new Map<number, { ppid: number; seconds: number }>();
  const ownSeconds = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const text = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (text === '') continue;
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // After the name: ppid is field 2 of 0-based 1; utime, stime, cutime, cstime are 11–14.
    procs.set(Number(entry), {
      ppid: Number(f[1]),
      seconds: (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLOCK_TICKS,
    });
    ownSeconds.set(Number(entry), (Number(f[11]) + Number(f[12])) / CLOCK_TICKS);
  }
  const topOf = (pid: number): number | undefined => {
    for (let p = pid, guard = 0; guard < 64; guard++) {
      const ppid = procs.get(p)?.ppid;
      if (ppid === undefined || ppid === 0) return undefined;
      if (ppid === root) return p;
      p = ppid;
    }
    return undefined;
  };
  const out = new Map<number, { cmd: string; seconds: number; own: number }>();
  for (const [pid, { seconds }] of procs) {
    const top = topOf(pid);
    if (top === undefined) continue;
    const entry = out.get(top) ?? {
      cmd: (await readFile(`/proc/${top}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ').trim(),
      seconds: 0,
      own: 0,
    };
    entry.seconds += seconds;
    if (pid === top) entry.own = ownSeconds.get(pid) ?? 0;
    out.set(top, entry);
  }
  return out;
}

/** CPU seconds of this process's children that have exited and been waited for. */
export async function reapedChildrenSeconds(): Promise<number> {
  const text = await readFile('/proc/self/stat', 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / CLOCK_TICKS;
}
