import { UnrecoverableError } from 'bullmq';
import { formatFailure, type BuildFailureKind } from '../protocol/build-jobs.js';
import type { ProcessResult } from './run-process.js';

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

export function isStopReason(value: unknown): value is StopReason {
  return typeof value === 'object' && value !== null && typeof (value as StopReason).kind === 'string' && typeof (value as StopReason).message === 'string';
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

/**
 * Nix's build-result exit statuses (`Worker::exitStatus`): 0x60 plus a mask of
 * 0x04 permanent build failure, 0x01 timed out, 0x02 hash mismatch, 0x08 check mismatch.
 * Exit status 1 is any other error (download, store, configuration, …).
 */
const BUILD_STATUS_BASE = 0x60;

/**
 * What a finished `nix-store -r` means. Decided on the exit status first, since that is what
 * Nix defines; the text is only consulted for status 1 (a generic error), where Nix versions
 * differ, and only for its own error lines, never for the builder's output.
 */
export function classifyRealise(res: ProcessResult, limits: { timeout: number; maxSilent: number }): StopReason | undefined {
  if (res.killed === 'timeout') return { kind: 'timeout', message: `build exceeded the ${limits.timeout} s time limit and was killed` };
  if (res.killed === 'silence') return { kind: 'timeout', message: `build printed nothing for ${limits.maxSilent} s and was killed` };
  if (res.killed === 'aborted') {
    return isStopReason(res.abortReason) ? res.abortReason : { kind: 'cancelled', message: 'build was stopped' };
  }
  if (res.code === 0) return undefined;
  const nixError = lastNixError(res.stderr);
  if (res.code === null) {
    return { kind: 'infrastructure', message: `nix-store was killed by ${res.signal ?? 'a signal'}` };
  }
  if (res.code > BUILD_STATUS_BASE && res.code < BUILD_STATUS_BASE + 0x10) {
    const mask = res.code - BUILD_STATUS_BASE;
    if (mask & 0x01) return { kind: 'timeout', message: nixError ?? 'build timed out' };
    return { kind: 'build', message: nixError ?? `build failed (nix-store exit status ${res.code})` };
  }
  if (nixError !== undefined) {
    if (/^builder for '[^']+' failed\b/.test(nixError) || /failed to produce output path/.test(nixError)) {
      return { kind: 'build', message: nixError };
    }
    if (/\btimed out after \d+ seconds\b/.test(nixError)) return { kind: 'timeout', message: nixError };
  }
  return { kind: 'infrastructure', message: nixError ?? `nix-store exited with status ${res.code}` };
}

/**
 * Nix lines saying the hub's cache could not be reached. Nix then quietly disables the
 * substituter and builds the inputs itself, which on a build farm means rebuilding the world;
 * the spoke stops such a build instead and lets the job be retried.
 */
export function substituterTrouble(line: string, cacheUrl: string): string | undefined {
  const text = line.replace(ANSI, '').trim();
  if (!text.startsWith('warning:') && !text.startsWith('error:')) return undefined;
  if (/disabling binary cache/.test(text)) return text;
  if (text.includes(cacheUrl) && /unable to download|Couldn't connect|HTTP error \d{3}|Connection refused|timed out/i.test(text)) {
    // A final "unable to download …" line follows Nix's retries ("…; retrying in N ms").
    return /retrying in \d+ ms/.test(text) ? undefined : text;
  }
  return undefined;
}
