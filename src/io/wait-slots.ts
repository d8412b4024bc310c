import { NarhubError } from '../errors.js';

export interface WaitSlotsOptions {
  /** Holders at once. */
  slots: number;
  /** Callers that may wait for a slot; one more is refused at once. */
  queue: number;
  /** Longest a caller waits before it is refused. */
  maxWaitMs: number;
  /** What is being limited, for the refusal's message: `xz decodes`. */
  what: string;
  /** Seconds the refusal asks the client to wait (Retry-After). */
  retryAfterSeconds: number;
}

export interface WaitSlots {
  /**
   * A slot, and the function that gives it back (call it once, however the work ended). Waits in
   * line (first come, first served) while all are taken; refuses with `UNAVAILABLE` (details:
   * `retryAfter` seconds) when the line is full or the wait passes `maxWaitMs`; rejects with the
   * signal's reason when it aborts while waiting.
   */
  acquire(signal?: AbortSignal): Promise<() => void>;
  /** Slots held and callers waiting now. */
  usage(): { held: number; waiting: number };
}

interface Waiter {
  grant(): void;
}

/** A counting semaphore with a bounded, time-limited line: work that is costly in memory waits for its turn. */
export function createWaitSlots(opts: WaitSlotsOptions): WaitSlots {
  let held = 0;
  const line: Waiter[] = [];
  const busy = (why: string) =>
    new NarhubError('UNAVAILABLE', `${why}: ${opts.slots} ${opts.what} run at once; try again shortly`, {
      details: { retryAfter: opts.retryAfterSeconds },
    });

  const releaser = () => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = line.shift();
      if (next) next.grant();
      else held--;
    };
  };

  return {
    usage: () => ({ held, waiting: line.length }),
    acquire(signal) {
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (held < opts.slots) {
        held++;
        return Promise.resolve(releaser());
      }
      if (line.length >= opts.queue) return Promise.reject(busy(`${opts.queue} more wait already`));
      return new Promise((resolve, reject) => {
        const leave = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          const i = line.indexOf(waiter);
          if (i >= 0) line.splice(i, 1);
        };
        const waiter: Waiter = {
          // The slot passes straight from its holder to the first in line: `held` stays.
          grant: () => {
            leave();
            resolve(releaser());
          },
        };
        const onAbort = () => {
          leave();
          reject(signal!.reason);
        };
        const timer = setTimeout(() => {
          leave();
          reject(busy(`waited ${Math.round(opts.maxWaitMs / 1000)} s`));
        }, opts.maxWaitMs);
        signal?.addEventListener('abort', onAbort, { once: true });
        line.push(waiter);
      });
    },
  };
}
