import { NarhubError, isNarhubError } from '../errors.js';

/** How Node reports a body that ended early: an abort, a premature close, a reset connection. */
const ABORT_CODES = new Set(['ABORT_ERR', 'ERR_STREAM_PREMATURE_CLOSE', 'ECONNRESET']);

export function isAbortLike(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && ABORT_CODES.has(code);
}

/** The errors among settled promises, in their order. */
export function rejections(results: PromiseSettledResult<unknown>[]): unknown[] {
  return results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
}

/**
 * The most telling of an upload's errors, which its streams' failures cause one another: a
 * complaint of narhub's about the bytes beats a storage error, which beats the generic stream
 * errors they cause; a body that ended early is the client's BAD_REQUEST. `what` names it.
 */
export function mostTelling(errors: unknown[], what: string): unknown {
  const found =
    errors.find((e) => isNarhubError(e) && e.code !== 'STORAGE_ERROR') ?? errors.find((e) => isNarhubError(e));
  if (found !== undefined) return found;
  if (isAbortLike(errors[0])) {
    return new NarhubError('BAD_REQUEST', `upload aborted before the ${what} was complete`, { cause: errors[0] });
  }
  return errors[0];
}
