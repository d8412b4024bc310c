import { Writable } from 'node:stream';
import { NarParser, type NarParserOptions, type NarSummaryFor } from '../nix/nar/nar-parser.js';

/**
 * A Writable that validates, hashes and lists the NAR written to it (decompressed bytes).
 * Invalid input errors the stream (NAR_INVALID) at the first bad chunk, so a pipeline feeding
 * it stops early; `result()` is available once it has finished.
 */
export class NarValidator<L extends boolean = true> extends Writable {
  private readonly parser: NarParser<L>;
  private summary: NarSummaryFor<L> | undefined;

  constructor(options: NarParserOptions<L> = {}) {
    super();
    this.parser = new NarParser<L>(options);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    try {
      this.parser.update(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    try {
      this.summary = this.parser.finish();
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback();
  }

  result(): NarSummaryFor<L> {
    if (this.summary === undefined) throw new Error('NarValidator.result() called before the stream finished');
    return this.summary;
  }
}

export function createNarValidator<L extends boolean = true>(options: NarParserOptions<L> = {}): NarValidator<L> {
  return new NarValidator<L>(options);
}
