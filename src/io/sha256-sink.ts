import { CodecStream } from './codec-thread/codec-stream.js';
import type { Sha256Result } from './codec-thread/protocol.js';

export type { Sha256Result };

/**
 * A sink that hashes (SHA-256) and counts what is written to it on a codec thread
 * (`codec-thread/codec-stream.ts`), so an upload's FileHash costs the event loop only a copy.
 * `result()` settles once it has finished.
 */
export class Sha256Sink extends CodecStream {
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
