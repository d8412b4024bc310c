import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * Pass-through that sha256-hashes and counts the bytes it forwards, so a stored file's
 * FileHash/FileSize come out of the same pass that stores it.
 */
export class HashCounter extends Transform {
  /** Bytes seen so far; final once the stream has finished. */
  bytes = 0;
  private readonly hash = createHash('sha256');
  private result: Uint8Array | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.result = this.hash.digest();
    callback();
  }

  /** The sha256 of everything that passed; only available after the writable side finished. */
  digest(): Uint8Array {
    if (this.result === undefined) throw new Error('HashCounter.digest() called before the stream finished');
    return this.result;
  }
}

export function createHashCounter(): HashCounter {
  return new HashCounter();
}
