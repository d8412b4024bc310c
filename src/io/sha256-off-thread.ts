import { OffThreadTransform } from './off-thread-transform.js';
import type { Sha256Result } from './transform-thread.js';

export type { Sha256Result };

/**
 * A sink that hashes (SHA-256) and counts what is written to it on a codec thread
 * (`off-thread-transform.ts`), so an upload's FileHash costs the event loop only a copy.
 * `result()` settles once it has finished.
 */
export class Sha256OffThread extends OffThreadTransform {
  private readonly outcome: Promise<Sha256Result>;

  constructor() {
    super({ codec: 'sha256' });
    this.resume();
    this.outcome = this.codecOutcome<Sha256Result>();
  }

  result(): Promise<Sha256Result> {
    return this.outcome;
  }
}

export function createSha256OffThread(): Sha256OffThread {
  return new Sha256OffThread();
}
