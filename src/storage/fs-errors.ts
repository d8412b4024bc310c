import { NarhubError } from '../errors.js';

/** The errno code (`ENOENT`, `ENOSPC`, …) of a filesystem error, if it has one. */
export function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** Whether a filesystem error says the path is not there. */
export function isMissing(err: unknown): boolean {
  const code = errnoOf(err);
  // ENOTDIR: a parent in the path is a file, so the path cannot exist.
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** A failure of local storage as narhub reports it: STORAGE_ERROR naming the step and the key. */
export function storageError(what: string, key: string, err: unknown): NarhubError {
  if (err instanceof NarhubError) return err;
  return new NarhubError(
    'STORAGE_ERROR',
    `local storage ${what} failed for ${JSON.stringify(key)}: ${messageOf(err)}`,
    {
      cause: err,
      details: { key, code: errnoOf(err) },
    },
  );
}

/** Runs one filesystem step of ours, reporting its failure as STORAGE_ERROR. */
export async function fsStep<T>(what: string, key: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw storageError(what, key, err);
  }
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
