import type { RetryOptions, RetryPolicy } from '../io/retry.js';

/** A failure worth another try (connection trouble, 5xx, 429) or not (anything else). */
export class PushFailure extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
    /** Seconds the server asked us to wait (Retry-After), if it did. */
    readonly retryAfter?: number,
    /** The HTTP status of the answer that refused, when a server refused. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'PushFailure';
  }
}

/** How the push client retries: only PushFailures marked transient, after any Retry-After. */
export function pushRetries(policy: RetryPolicy): RetryOptions {
  return {
    ...policy,
    retryable: (err) => err instanceof PushFailure && err.transient,
    retryAfter: (err) => (err instanceof PushFailure ? err.retryAfter : undefined),
  };
}
