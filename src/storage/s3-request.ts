import type { S3Client } from '@aws-sdk/client-s3';
import { NarhubError } from '../errors.js';
import { abortError } from '../io/abort.js';
import type { BufferMeter } from './part-reader.js';

/** What every request of an S3 blob store needs. */
export interface S3Context {
  client: S3Client;
  bucket: string;
  /** Parts of one put in flight at once. */
  queueSize: number;
  meter: BufferMeter;
  /** Upload ids of the multipart puts this store is driving now (s3-stale-uploads.ts spares them). */
  uploads: Set<string>;
}

/** Runs one S3 request of ours, reporting its failure as STORAGE_ERROR (aborts stay aborts). */
export async function s3Request<T>(
  what: string,
  key: string,
  signal: AbortSignal | undefined,
  op: () => Promise<T>,
): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (signal?.aborted) throw abortError(signal);
    throw storageError(what, key, err);
  }
}

export function statusOf(err: unknown): number | undefined {
  const meta = (err as { $metadata?: { httpStatusCode?: unknown } } | undefined)?.$metadata;
  return typeof meta?.httpStatusCode === 'number' ? meta.httpStatusCode : undefined;
}

/** The key is absent (a missing bucket is a storage error: HEAD cannot tell, GET can). */
export function isNotFound(err: unknown): boolean {
  const name = (err as { name?: unknown } | undefined)?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || (statusOf(err) === 404 && name !== 'NoSuchBucket');
}

export function storageError(what: string, key: string, err: unknown): NarhubError {
  if (err instanceof NarhubError) return err;
  const name = (err as { name?: unknown } | undefined)?.name;
  const message = err instanceof Error ? err.message : String(err);
  return new NarhubError(
    'STORAGE_ERROR',
    `S3 ${what} failed for ${JSON.stringify(key)}: ${typeof name === 'string' ? `${name}: ` : ''}${message}`,
    {
      cause: err,
      details: { key, status: statusOf(err), name },
    },
  );
}

export function checkSize(key: string, expected: number | undefined, actual: number): void {
  if (expected !== undefined && expected !== actual) {
    throw new NarhubError('BAD_REQUEST', `blob body for ${key} was ${actual} bytes, expected ${expected}`);
  }
}
