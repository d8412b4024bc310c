/**
 * Stable error codes. Domain code throws `NarhubError(code, message)`; the HTTP layer maps each
 * code to a status in exactly one place (src/http/error-handler.ts), so adding a code without
 * deciding its status is a compile error there.
 */
export type ErrorCode =
  // Request shape
  | 'BAD_REQUEST'
  | 'BODY_TOO_LARGE'
  | 'RANGE_NOT_SATISFIABLE'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  // Nix formats
  | 'STORE_PATH_INVALID'
  | 'HASH_INVALID'
  | 'NARINFO_PARSE_ERROR'
  | 'NARINFO_INVALID'
  | 'NAR_INVALID'
  | 'NAR_HASH_MISMATCH'
  | 'NAR_SIZE_MISMATCH'
  | 'FILE_HASH_MISMATCH'
  | 'FILE_SIZE_MISMATCH'
  | 'COMPRESSION_UNSUPPORTED'
  | 'COMPRESSION_MISMATCH'
  | 'KEY_INVALID'
  | 'SIGNATURE_INVALID'
  | 'SIGNATURE_REFUSED'
  // Cache domain
  | 'CACHE_NOT_FOUND'
  | 'CACHE_EXISTS'
  | 'CACHE_NAME_INVALID'
  | 'NAR_NOT_UPLOADED'
  | 'REFERENCE_MISSING'
  | 'PATH_CONTENT_CONFLICT'
  | 'CONTENT_ADDRESS_MISMATCH'
  | 'TOKEN_NOT_FOUND'
  | 'PIN_EXISTS'
  | 'KEY_REWRITE_PENDING'
  | 'UPSTREAM_NOT_FOUND'
  | 'UPSTREAM_DECLARED'
  // Auth
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'RATE_LIMITED'
  // Config
  | 'CONFIG_INVALID'
  // Infrastructure
  | 'STORAGE_ERROR'
  | 'UNAVAILABLE'
  | 'UPSTREAM_FAILED'
  | 'INTERNAL';

export class NarhubError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NarhubError';
    this.code = code;
    this.details = options?.details;
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

export function isNarhubError(err: unknown): err is NarhubError {
  return err instanceof NarhubError;
}
