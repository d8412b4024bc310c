import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CodecStream } from './codec-thread/codec-stream.js';
import type { NarResult } from './codec-thread/protocol.js';
import type { Compression } from './compression.js';
import type { ContentHashSpec } from '../nix/nar/content-hasher.js';

export type { NarResult };

export interface NarPassOptions {
  /** Build the `.ls` listing (formatted, in `result().listing`). */
  listing: boolean;
  /** Compress the NAR with zstd: the stream's output, hashed and counted (`digest()`, `bytes`). */
  compress?: { level: number; workers: number };
  /** Fail with BODY_TOO_LARGE once the NAR (decoded) passes this many bytes. */
  maxSize?: number;
  /** Also compute this content-address hash (`result().contentHash`), in the same pass. */
  contentHash?: ContentHashSpec;
}

/**
 * One pass over a NAR on a codec thread (`codec-thread/codec-stream.ts`): validate it against
 * every NAR rule while hashing and listing it (`nix/nar/nar-parser.ts`, with its NarhubErrors
 * and summary), and, with `compress`, compress it with zstd. The event loop only copies the
 * written bytes into slabs (and passes the zstd output on). A NAR that comes compressed is
 * written to a decoder linked to it instead (`createNarPass`).
 *
 * Without `compress` it is a sink: nothing comes out. `result()` settles once it has finished,
 * with NarHash, NarSize and the listing, or with what failed it (an invalid NAR: NAR_INVALID).
 */
export class NarPass extends CodecStream {
  private readonly outcome: Promise<NarResult>;

  constructor(opts: NarPassOptions) {
    super(
      {
        codec: 'nar',
        listing: opts.listing,
        ...(opts.compress ? { compress: opts.compress } : {}),
        ...(opts.maxSize !== undefined ? { maxSize: opts.maxSize } : {}),
        ...(opts.contentHash !== undefined ? { contentHash: opts.contentHash } : {}),
      },
      { hashOutput: opts.compress !== undefined },
    );
    // A sink's readable side, flowing, ends by itself after the last write.
    if (!opts.compress) this.resume();
    this.outcome = this.codecOutcome<NarResult>();
  }

  result(): Promise<NarResult> {
    return this.outcome;
  }
}

/**
 * A NAR pass (`NarPass`) for a NAR file as uploaded or stored: write the file to `input`;
 * `pass` reports and (with `compress`) outputs. For a compressed file, `input` is a decoder on a
 * codec thread of its own where possible, whose output goes straight to `pass`'s thread
 * (`CodecStream`'s `outputTo`): decoding and validating run side by side (zstd decodes at
 * about 1 s/GB, the NAR hashes at 0.6 s/GB) and decoded bytes never reach the event loop. The
 * decoders and options are `createDecompressor`'s; a corrupt stream fails both streams with
 * `<compression> decompression failed: <reason>`, which `pass.result()` then rejects with.
 */
export function createNarPass(opts: NarPassOptions & { decompress?: Compression }): {
  input: Writable;
  pass: NarPass;
} {
  const pass = new NarPass(opts);
  if (opts.decompress === undefined || opts.decompress === 'none') return { input: pass, pass };
  const decoder = new CodecStream({ codec: 'decompress', compression: opts.decompress }, { outputTo: pass });
  // Ends `pass` once everything is decoded; a failure of either fails both (and `pass.result()`).
  pipeline(decoder, pass).catch(() => undefined);
  return { input: decoder, pass };
}
