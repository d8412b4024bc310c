/**
 * The spoke's one counting semaphore: `--max-jobs` builds at once across ALL its queues. Taking
 * a slot never waits (a job that finds no slot is handed back to its queue, so an idle spoke
 * can take it); listeners hear every change so the queues can pause while the spoke is full.
 */
export class BuildSlots {
  readonly #max: number;
  readonly #held = new Map<string, number>();
  readonly #listeners = new Set<(full: boolean) => void>();
  #count = 0;

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`max jobs must be a whole number >= 1, got ${max}`);
    this.#max = max;
  }

  get max(): number {
    return this.#max;
  }

  get used(): number {
    return this.#count;
  }

  get full(): boolean {
    return this.#count >= this.#max;
  }

  /** drvHash of every running build, for heartbeats. */
  running(): string[] {
    return [...this.#held.keys()];
  }

  /** Takes a slot for `key` now, or returns undefined when all are taken. The release is idempotent. */
  tryAcquire(key: string): (() => void) | undefined {
    if (this.full) return undefined;
    this.#count++;
    this.#held.set(key, (this.#held.get(key) ?? 0) + 1);
    this.#emit();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#count--;
      const n = (this.#held.get(key) ?? 1) - 1;
      if (n > 0) this.#held.set(key, n);
      else this.#held.delete(key);
      this.#emit();
    };
  }

  /** Resolves once no slot is held. */
  whenIdle(): Promise<void> {
    if (this.#count === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const off = this.onChange(() => {
        if (this.#count === 0) {
          off();
          resolve();
        }
      });
    });
  }

  /** Calls `listener(full)` after every acquire and release; returns the unsubscribe function. */
  onChange(listener: (full: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  #emit(): void {
    const full = this.full;
    for (const listener of this.#listeners) listener(full);
  }
}
