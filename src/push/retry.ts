/** A failure worth another try (connection trouble, 5xx, 429) or not (anything else). */
export class PushFailure extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
    /** Seconds the server asked us to wait (Retry-After), if it did. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'PushFailure';
  }
}

export interface RetryPolicy {
  /** Further attempts after the first. */
  retries: number;
  /** First backoff, doubled on every retry (default 500 ms). */
  baseMs?: number;
  /** Longest single wait (default 30 s). */
  maxMs?: number;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** Exponential backoff with full jitter: a random wait up to base·2^attempt, capped. */
export function backoffMs(attempt: number, policy: RetryPolicy, retryAfter?: number): number {
  const base = policy.baseMs ?? 500;
  const max = policy.maxMs ?? 30_000;
  const ceiling = Math.min(max, base * 2 ** attempt);
  const jittered = Math.round(ceiling / 2 + (policy.random ?? Math.random)() * (ceiling / 2));
  return retryAfter !== undefined ? Math.max(jittered, Math.min(max, retryAfter * 1000)) : jittered;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `attempt` until it succeeds, fails for good, or `retries` further tries have failed.
 * Only PushFailures marked transient are retried; `onRetry` hears of each wait.
 */
export async function withRetries<T>(
  attempt: (n: number) => Promise<T>,
  policy: RetryPolicy,
  onRetry?: (info: { attempt: number; delayMs: number; error: PushFailure }) => void,
): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      const failure =
        err instanceof PushFailure ? err : new PushFailure(err instanceof Error ? err.message : String(err), false);
      if (!failure.transient || n >= policy.retries) throw failure;
      const delayMs = backoffMs(n, policy, failure.retryAfter);
      onRetry?.({ attempt: n + 1, delayMs, error: failure });
      await (policy.sleep ?? sleep)(delayMs);
    }
  }
}
