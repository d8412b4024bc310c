import { spawn } from 'node:child_process';
import { NarhubError } from '../errors.js';

export interface NixRunOptions {
  /** Absolute time (ms) by which the command must have ended; it is killed then. */
  deadline: number;
  /** Address-space limit of the process, MiB (`ulimit -v`); none when undefined. */
  memoryMb?: number | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /** Aborts (kills) the command, e.g. when the hub shuts down. */
  signal?: AbortSignal | undefined;
  /** Bytes of stdout kept at most (JSON of big graphs can be large). */
  maxStdout?: number;
}

export interface NixRunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

class NixTimeoutError extends NarhubError {
  constructor(command: string) {
    super('UNAVAILABLE', `${command} did not finish in time and was killed`);
    this.name = 'NixTimeoutError';
  }
}

/**
 * Runs a Nix command in its own process group, under `ulimit -v` when a memory limit is given,
 * and kills the whole group (Nix forks helpers) when the deadline passes or the signal aborts.
 */
export function runNix(args: string[], opts: NixRunOptions): Promise<NixRunResult> {
  const command = `nix ${args[0] ?? ''}`;
  const limit = opts.memoryMb === undefined ? '' : `ulimit -v ${Math.floor(opts.memoryMb * 1024)} || exit 125; `;
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(new NarhubError('UNAVAILABLE', `${command} aborted: the hub is stopping`));
    const remaining = opts.deadline - Date.now();
    if (remaining <= 0) return reject(new NixTimeoutError(command));
    const child = spawn('/bin/sh', ['-c', `${limit}exec "$@"`, 'sh', 'nix', ...args], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    const max = opts.maxStdout ?? 256 * 1024 ** 2;
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    let killedFor: 'timeout' | 'abort' | 'output' | undefined;
    const kill = (why: 'timeout' | 'abort' | 'output') => {
      killedFor ??= why;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => kill('timeout'), remaining);
    const onAbort = () => kill('abort');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (d: Buffer) => {
      outBytes += d.length;
      if (outBytes > max) kill('output');
      else out.push(d);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      // Keep the tail: Nix prints the error last.
      err = (err + d).slice(-64 * 1024);
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      reject(new NarhubError('UNAVAILABLE', `cannot run nix: ${e.message}`, { cause: e }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (killedFor === 'timeout') return reject(new NixTimeoutError(command));
      if (killedFor === 'abort')
        return reject(new NarhubError('UNAVAILABLE', `${command} aborted: the hub is stopping`));
      if (killedFor === 'output')
        return reject(new NarhubError('BAD_REQUEST', `${command} printed more than ${max} bytes`));
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: err });
    });
  });
}

/** The useful part of Nix's stderr: from the last `error:` on, without the trace noise. */
export function nixError(stderr: string): string {
  const text = stderr.replace(/\r/g, '');
  const at = text.lastIndexOf('error:');
  const tail = (at >= 0 ? text.slice(at) : text).trim();
  const lines = tail.split('\n').filter((l) => l.trim() !== '');
  return lines.slice(0, 12).join('\n').slice(0, 4000) || 'nix failed without an error message';
}
