// Runs a long-lived narhub command (push-daemon, watch-store) as a child process and follows
// what it prints.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI_PATH } from './server.js';
import type { Cleanup } from './tmp.js';

const debug = process.env.NARHUB_E2E_DEBUG === '1';

export interface CliDaemon {
  pid: number;
  /** stdout and stderr so far. */
  output(): string;
  /** Waits until the output (from `from` characters on) matches `pattern`; fails with the output. */
  waitFor(pattern: RegExp, timeoutMs?: number, from?: number): Promise<RegExpMatchArray>;
  signal(sig: NodeJS.Signals): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface CliDaemonOptions {
  /** Prefixes its output with NARHUB_E2E_DEBUG=1 (default: the command's name). */
  label?: string;
  /** Runs after the test, once the process is gone (it may have left children behind). */
  cleanup?: () => void;
}

/** Spawns `narhub ARGS…`; SIGKILLed after the test if still running. */
export function startCliDaemon(
  t: Cleanup,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: CliDaemonOptions = {},
): CliDaemon {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const label = options.label ?? args[0];
  let out = '';
  const onData = (d: string) => {
    out += d;
    if (debug) process.stderr.write(`[${label}] ${d}`);
  };
  child.stdout.setEncoding('utf8').on('data', onData);
  child.stderr.setEncoding('utf8').on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    options.cleanup?.();
  });
  return {
    pid: child.pid!,
    output: () => out,
    async waitFor(pattern, timeoutMs = 60_000, from = 0) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = out.slice(from).match(pattern);
        if (m) return m;
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`narhub ${label} exited before printing ${pattern}:\n${out}`);
        if (Date.now() > deadline) throw new Error(`narhub ${label} printed no ${pattern} in ${timeoutMs} ms:\n${out}`);
        await sleep(50);
      }
    },
    signal: (sig) => child.kill(sig),
    exited,
  };
}
