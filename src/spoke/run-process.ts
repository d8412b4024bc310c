import { spawn } from 'node:child_process';
import { killProcessTree } from './process-tree.js';

/** Why the spoke (not the command itself) ended a process. */
export type KillReason = 'timeout' | 'silence' | 'aborted';

export interface RunProcessOptions {
  env?: NodeJS.ProcessEnv;
  /** Called with stderr text as it arrives (UTF-8, split anywhere). */
  onStderr?: (text: string) => void;
  /** Called with stdout text as it arrives. */
  onStdout?: (text: string) => void;
  /** Kill the tree after this many ms of wall-clock time (0 or undefined: never). */
  timeoutMs?: number;
  /** Kill the tree after this many ms without output on stdout or stderr (0 or undefined: never). */
  silenceMs?: number;
  /** Kill the tree when aborted. */
  signal?: AbortSignal;
  /** Keep at most this many characters of each stream's end (default 64 KiB). */
  keepChars?: number;
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last `keepChars` characters of each stream. */
  stdout: string;
  stderr: string;
  /** Set when the spoke killed the process tree, and why. */
  killed: KillReason | undefined;
  /** `signal.reason` when killed because of the abort signal. */
  abortReason: unknown;
}

/**
 * Runs a command in a process group of its own (`detached`), streaming its output, and kills
 * its whole process tree on timeout, silence or abort. Never rejects because of the exit status;
 * rejects only when the command cannot be started.
 */
export function runProcess(cmd: string, args: string[], opts: RunProcessOptions = {}): Promise<ProcessResult> {
  const keep = opts.keepChars ?? 64 * 1024;
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      resolve({ code: null, signal: null, stdout: '', stderr: '', killed: 'aborted', abortReason: opts.signal.reason });
      return;
    }
    const child = spawn(cmd, args, { env: opts.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killed: KillReason | undefined;
    let abortReason: unknown;
    let exited = false;

    const kill = (why: KillReason) => {
      if (killed || exited || child.pid === undefined) return;
      killed = why;
      killProcessTree(child.pid);
    };
    const onAbort = () => {
      abortReason = opts.signal?.reason;
      kill('aborted');
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const wallTimer = opts.timeoutMs ? setTimeout(() => kill('timeout'), opts.timeoutMs) : undefined;
    let silenceTimer: NodeJS.Timeout | undefined;
    const armSilence = () => {
      if (!opts.silenceMs) return;
      if (silenceTimer) silenceTimer.refresh();
      else silenceTimer = setTimeout(() => kill('silence'), opts.silenceMs);
    };
    armSilence();

    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      armSilence();
      stdout += text;
      if (stdout.length > 2 * keep) stdout = stdout.slice(-keep);
      opts.onStdout?.(text);
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      armSilence();
      stderr += text;
      if (stderr.length > 2 * keep) stderr = stderr.slice(-keep);
      opts.onStderr?.(text);
    });

    const cleanup = () => {
      exited = true;
      clearTimeout(wallTimer);
      clearTimeout(silenceTimer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    child.once('error', (err) => {
      cleanup();
      reject(err);
    });
    // 'close' waits for the pipes too, so all output has been seen.
    child.once('close', (code, sig) => {
      cleanup();
      resolve({ code, signal: sig, stdout: stdout.slice(-keep), stderr: stderr.slice(-keep), killed, abortReason });
    });
  });
}
