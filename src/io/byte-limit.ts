import { Transform, type TransformCallback } from 'node:stream';
import { NarhubError } from '../errors.js';

/**
 * Pass-through that fails with BODY_TOO_LARGE as soon as more than `max` bytes have arrived,
 * whatever Content-Length claimed (chunked uploads have none). The chunk that crosses the limit
 * is not forwarded.
 */
export class ByteLimit extends Transform {
  private seen = 0;

  constructor(readonly max: number) {
    super();
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`invalid byte limit ${max}`);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.max) {
      callback(new NarhubError('BODY_TOO_LARGE', `body exceeds the limit of ${this.max} bytes`));
      return;
    }
    callback(null, chunk);
  }
}

export function createByteLimit(max: number): ByteLimit {
  return new ByteLimit(max);
}
