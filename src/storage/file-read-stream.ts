import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { BlobRead } from './blob-store.js';

/**
 * Read streams pull 1 MiB per read(2) instead of Node's 64 KiB default: a multi-GB NAR then
 * costs a sixteenth of the syscalls and stream callbacks on its way to the socket (and the
 * buffers are reused when the reader recycles them, see FileReadStream).
 */
const READ_CHUNK = 1024 * 1024;

/** A read of bytes `start` (inclusive) to `end` (exclusive) of an open file, which it owns. */
export function fileRead(fh: FileHandle, start: number, end: number, totalSize: number): BlobRead {
  const stream = new FileReadStream(fh, start, end);
  return { stream, size: end - start, totalSize, recycle: (chunk) => stream.recycle(chunk) };
}

/** Buffers a FileReadStream keeps for reuse. */
const SPARE_CHUNKS = 4;

/**
 * Reads a file range in READ_CHUNK pieces, like `fh.createReadStream`, but reads into buffers
 * handed back through `recycle` when it has some, so a caller that recycles (the HTTP layer,
 * once the socket has written a chunk) streams gigabytes without producing garbage. Closes the
 * file when it ends or is destroyed. A file that turns out shorter than the range is an error,
 * never a silently short body.
 */
class FileReadStream extends Readable {
  private position: number;
  private readonly spare: Buffer[] = [];
  /** Backing buffers of the chunks pushed and not recycled yet: only these may come back. */
  private readonly lent = new Set<ArrayBufferLike>();

  constructor(
    private readonly fh: FileHandle,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_CHUNK });
    this.position = start;
  }

  recycle(chunk: Uint8Array): void {
    if (!this.lent.delete(chunk.buffer)) return;
    if (this.spare.length < SPARE_CHUNKS && !this.destroyed) this.spare.push(Buffer.from(chunk.buffer, 0, READ_CHUNK));
  }

  override _read(): void {
    const want = Math.min(READ_CHUNK, this.end - this.position);
    if (want <= 0) {
      this.push(null);
      return;
    }
    // A small file (or tail) gets a buffer of its size: a fresh 1 MiB one per small read would
    // be external memory that V8 answers with garbage collections. Only full-size ones are lent.
    const spare = this.spare.pop();
    const buffer = spare ?? (want < READ_CHUNK ? Buffer.allocUnsafe(want) : Buffer.allocUnsafeSlow(READ_CHUNK));
    const lend = buffer.length === READ_CHUNK;
    this.fh.read(buffer, 0, want, this.position).then(
      ({ bytesRead }) => {
        if (this.destroyed) return;
        if (bytesRead === 0) {
          this.destroy(new Error(`file ended at byte ${this.position}, before the ${this.end} bytes expected`));
          return;
        }
        this.position += bytesRead;
        if (lend) this.lent.add(buffer.buffer);
        this.push(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.spare.length = 0;
    this.fh.close().then(
      () => callback(error),
      (closeError: unknown) => callback(error ?? (closeError as Error)),
    );
  }
}
