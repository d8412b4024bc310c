// A file thread: whole small-file operations (pool.ts sends them) done with synchronous calls,
// one message each way per file instead of a libuv round trip per syscall.
import {
  closeSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { errnoOf, isMissing } from '../fs-errors.js';
import type { FileJob, FileJobError, FileJobResult } from './protocol.js';

class StepError extends Error {
  constructor(
    readonly step: string,
    override readonly cause: unknown,
  ) {
    super(step);
  }
}

function step<T>(name: string, op: () => T): T {
  try {
    return op();
  } catch (err) {
    throw new StepError(name, err);
  }
}

function errorOf(err: unknown): FileJobError {
  const step = err instanceof StepError ? err.step : 'file operation';
  const cause = err instanceof StepError ? err.cause : err;
  const code = errnoOf(cause);
  return {
    step,
    message: cause instanceof Error ? cause.message : String(cause),
    ...(code === undefined ? {} : { code }),
  };
}

/**
 * Writes and renames one file; returns the directories whose fsync makes it durable (its own
 * and, when this made directories, each of them and the one holding the first).
 */
function writeFile(job: Extract<FileJob, { type: 'write' }>): string[] {
  let fd: number;
  try {
    fd = openSync(job.temp, 'wx');
  } catch (err) {
    if (!isMissing(err)) throw new StepError('create temp file', err);
    // Someone cleared the temp dir while the store was running.
    step('create temp file', () => mkdirSync(job.tempDir, { recursive: true }));
    fd = step('create temp file', () => openSync(job.temp, 'wx'));
  }
  let renamed = false;
  try {
    try {
      // write(2) may write less than asked, e.g. on a nearly full disk before ENOSPC.
      for (let offset = 0; offset < job.data.byteLength; )
        offset += step('write', () => writeSync(fd, job.data, offset));
      if (job.durable) step('fsync', () => fsyncSync(fd));
    } finally {
      closeSync(fd);
    }
    const dir = dirname(job.target);
    let firstCreated: string | undefined;
    try {
      renameSync(job.temp, job.target);
    } catch (err) {
      if (!isMissing(err)) throw new StepError('rename', err);
      firstCreated = step('create directory', () => mkdirSync(dir, { recursive: true }));
      step('rename', () => renameSync(job.temp, job.target));
    }
    renamed = true;
    const dirs = [dir];
    if (firstCreated !== undefined) {
      for (let d = dirname(dir); ; d = dirname(d)) {
        dirs.push(d);
        if (d === dirname(firstCreated) || d === dirname(d)) break;
      }
    }
    return dirs;
  } finally {
    if (!renamed) {
      try {
        unlinkSync(job.temp);
      } catch {
        // Already gone; a stale one would be swept at the next start.
      }
    }
  }
}

/** fsyncs files written without it; returns their directories, whose fsync makes the names durable. */
function syncFiles(job: Extract<FileJob, { type: 'sync' }>): string[] {
  for (const path of job.paths) {
    const fd = step('open', () => openSync(path, 'r'));
    try {
      step('fsync', () => fsyncSync(fd));
    } finally {
      closeSync(fd);
    }
  }
  return [...new Set(job.paths.map((p) => dirname(p)))];
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function readFile(job: Extract<FileJob, { type: 'read' }>): FileJobResult {
  let fd: number;
  try {
    fd = openSync(job.path, 'r');
  } catch (err) {
    if (isMissing(err)) return { id: job.id, found: 'missing' };
    throw new StepError('open', err);
  }
  try {
    const st = step('stat', () => fstatSync(fd));
    if (!st.isFile()) return { id: job.id, found: 'not-file' };
    if (st.size > job.maxSize) return { id: job.id, found: 'large', size: st.size };
    const bytes = new Uint8Array(st.size);
    for (let offset = 0; offset < bytes.byteLength; ) {
      const n = step('read', () => readSync(fd, bytes, offset, bytes.byteLength - offset, offset));
      if (n === 0)
        throw new StepError(
          'read',
          new Error(`file ended at byte ${offset}, before the ${bytes.byteLength} bytes expected`),
        );
      offset += n;
    }
    return { id: job.id, found: 'bytes', bytes };
  } finally {
    closeSync(fd);
  }
}

/**
 * Runs every job waiting, then fsyncs each directory they renamed into once: puts and syncs
 * arriving together share their directory fsyncs (group commit), and no put or sync is answered
 * before the fsync of its directory that started after its rename.
 */
function runBatch(first: FileJob): void {
  const jobs = [first];
  for (let m = receiveMessageOnPort(parentPort!); m !== undefined; m = receiveMessageOnPort(parentPort!))
    jobs.push(m.message as FileJob);
  const results: FileJobResult[] = [];
  const waiting: { id: number; dirs: string[] }[] = [];
  for (const job of jobs) {
    try {
      if (job.type === 'read') {
        results.push(readFile(job));
      } else if (job.type === 'sync') {
        waiting.push({ id: job.id, dirs: syncFiles(job) });
      } else {
        const dirs = writeFile(job);
        if (job.durable) waiting.push({ id: job.id, dirs });
        else results.push({ id: job.id, ok: true });
      }
    } catch (err) {
      results.push({ id: job.id, error: errorOf(err) });
    }
  }
  const synced = new Map<string, FileJobError | undefined>();
  for (const { id, dirs } of waiting) {
    let failed: FileJobError | undefined;
    for (const dir of dirs) {
      if (!synced.has(dir)) {
        try {
          syncDir(dir);
          synced.set(dir, undefined);
        } catch (err) {
          synced.set(dir, { ...errorOf(err), step: 'fsync directory' });
        }
      }
      failed ??= synced.get(dir);
    }
    results.push(failed ? { id, error: failed } : { id, ok: true });
  }
  // Read bytes move to the main thread rather than being copied.
  const transfer = results.flatMap((r) => ('bytes' in r ? [r.bytes.buffer as ArrayBuffer] : []));
  parentPort!.postMessage(results, transfer);
}

parentPort!.on('message', runBatch);
