import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryOptions {
  /** Extra tries after the first. */
  retries: number;
  /** Delay before the first retry (ms); doubles each time. */
  delayMs: number;
  signal?: AbortSignal;
  /** Whether an error is worth another try (default: every error). */
  retryable?: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs a network step again on failure, with exponential backoff, before the job gives up
 * (after which BullMQ's own attempts and backoff take over). Stops early once `signal` aborts.
 */
export async function withRetries<T>(step: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await step(attempt);
    } catch (err) {
      if (attempt >= opts.retries || opts.signal?.aborted || !(opts.retryable?.(err) ?? true)) throw err;
      const delay = opts.delayMs * 2 ** attempt;
      opts.onRetry?.(err, attempt + 1, delay);
      await sleep(delay, undefined, opts.signal ? { signal: opts.signal } : undefined).catch(() => undefined);
      if (opts.signal?.aborted) throw err;
    }
  }
}
