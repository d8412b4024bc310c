// The one retry loop of narhub's clients (the push client, the spoke's network steps).

export interface RetryPolicy {
  /** Further attempts after the first. */
  retries: number;
  /** First backoff, doubled on every retry (default 500 ms). */
  baseMs?: number;
  /** Longest single wait (default 30 s). */
  maxMs?: number;
  random?: () => number;
  /** Waits `ms`; resolves early when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface RetryOptions extends RetryPolicy {
  /** Whether a failure is worth another try. */
  retryable(err: unknown): boolean;
  /** Seconds the other side asked us to wait (HTTP Retry-After), if it did. */
  retryAfter?(err: unknown): number | undefined;
  /** Once aborted, no further attempt starts and a wait ends early: the last failure is thrown. */
  signal?: AbortSignal | undefined;
  /** Time (ms since the epoch) after which no attempt starts; a wait is cut short to end by then. */
  deadline?: number;
}

export interface RetryInfo {
  /** The attempt about to be made, counting from 1 for the first retry. */
  attempt: number;
  delayMs: number;
  error: unknown;
}

/** Exponential backoff with jitter: a random wait between half and all of base·2^attempt, capped. */
export function backoffMs(attempt: number, policy: RetryPolicy, retryAfterSeconds?: number): number {
  const base = policy.baseMs ?? 500;
  const max = policy.maxMs ?? 30_000;
  const ceiling = Math.min(max, base * 2 ** attempt);
  const jittered = Math.round(ceiling / 2 + (policy.random ?? Math.random)() * (ceiling / 2));
  return retryAfterSeconds !== undefined ? Math.max(jittered, Math.min(max, retryAfterSeconds * 1000)) : jittered;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Runs `attempt` until it succeeds, fails with an error not `retryable`, or `retries` further
 * tries have failed; the last error is thrown as it is. `onRetry` hears of each wait.
 */
export async function withRetries<T>(
  attempt: (n: number) => Promise<T>,
  options: RetryOptions,
  onRetry?: (info: RetryInfo) => void,
): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (n >= options.retries || options.signal?.aborted || !options.retryable(err)) throw err;
      const left = options.deadline === undefined ? Number.POSITIVE_INFINITY : options.deadline - Date.now();
      if (left <= 0) throw err;
      const delayMs = Math.min(left, backoffMs(n, options, options.retryAfter?.(err)));
      onRetry?.({ attempt: n + 1, delayMs, error: err });
      await (options.sleep ?? sleep)(delayMs, options.signal);
      if (options.signal?.aborted) throw err;
    }
  }
}
