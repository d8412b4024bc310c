import { Transform, type TransformCallback } from 'node:stream';
import { zstdCompressSmall } from '../io/compression.js';
import { createZstdCompressStream } from '../io/zstd-stream.js';

/** How a client compresses the NARs it uploads. */
export interface ClientZstd {
  level: number;
  /** zstd's own threads per upload. */
  workers: number;
}

/**
 * NARs up to this size are compressed in one call when they have all arrived: microseconds for
 * a few KiB, where a codec thread's hand-offs cost far more (the server's own line, SMALL_NAR_SIZE).
 */
const SMALL_NAR = 64 * 1024;

/**
 * A Transform from a NAR of `narSize` bytes to one zstd frame of it, which the server stores as
 * it is: larger NARs stream through a codec thread driving zstd's `workers` threads; small
 * ones are gathered and compressed in one call.
 */
export function createNarCompressor(narSize: number, zstd: ClientZstd): Transform {
  return narSize <= SMALL_NAR ? new SmallNarCompressor(zstd.level) : createZstdCompressStream(zstd.level, zstd.workers);
}

class SmallNarCompressor extends Transform {
  private readonly parts: Buffer[] = [];

  constructor(private readonly level: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.parts.push(chunk);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    callback(null, zstdCompressSmall(Buffer.concat(this.parts), this.level));
  }
}
