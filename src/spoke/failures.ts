import { UnrecoverableError } from 'bullmq';
import { formatFailure, type BuildFailureKind } from '../protocol/build-jobs.js';

/**
 * How a failed job leaves the spoke. BullMQ stores the thrown error's message as the job's
 * `failedReason`, so the message is always `formatFailure(kind, …)`. Only `infrastructure`
 * failures are retried (a plain Error: BullMQ applies the job's attempts and backoff); a build
 * that failed, timed out or was cancelled would fail the same way again, so those throw BullMQ's
 * UnrecoverableError and the job fails at once.
 */
export function jobFailure(kind: BuildFailureKind, message: string, opts: { retry?: boolean } = {}): Error {
  const text = formatFailure(kind, message);
  const retry = opts.retry ?? kind === 'infrastructure';
  const err = retry ? new Error(text) : new UnrecoverableError(text);
  return err;
}

/** Why the spoke stopped a running build itself (the abort reason of a job's controller). */
export interface StopReason {
  kind: BuildFailureKind;
  message: string;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

/** The last `error: …` line Nix printed, without colours and the prefix. */
export function lastNixError(stderr: string): string | undefined {
  const lines = stderr.replace(ANSI, '').split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^error: (.*)$/.exec(lines[i]!.trim());
    if (m) return m[1]!.replace(/;$/, '');
  }
  return undefined;
}

/** Nix's message without its colours. */
export const stripAnsi = (text: string) => text.replace(ANSI, '');
