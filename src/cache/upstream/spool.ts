import { closeSync, openSync, read, unlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { writevAll } from '../../storage/writev-all.js';

/** Bytes a reader asks the file for at a time. */
const READ_CHUNK = 1 << 20;

/**
 * One download from an upstream, written once to a temporary file that any number of readers
 * follow as it grows: the ingest that verifies and stores it, the client whose miss started it,
 * and clients that ask for the same NAR while it arrives (they start from byte 0 at once, instead
 * of waiting for the end or starting another download). The writer never waits for a reader, so
 * a slow client slows nobody else.
 *
 * Readers for clients are *gated*: until `release()` (the NAR was verified), they hold back the
 * end of the file. With a known size they stop one byte short; without, they deliver every byte
 * but do not end. If the download or the verification fails, `fail()` destroys them with the
 * error, so a client sees a broken transfer (a short body, or chunked encoding without its last
 * chunk), never a complete-looking corrupt NAR. The ingest reads ungated, to the end, as written.
 */
export class Spool {
  private written = 0;
  private finished = false;
  private released = false;
  private error: Error | undefined;
  private waiters = new Set<() => void>();
  private disposed = false;

  private constructor(
    readonly path: string,
    private readonly file: FileHandle,
    /** The size the NAR file must have, when known: readers for clients stop one byte short of it. */
    readonly expectedSize: number | undefined,
  ) {}

  static async create(path: string, expectedSize: number | undefined): Promise<Spool> {
    const file = await open(path, 'wx', 0o600);
    return new Spool(path, file, expectedSize);
  }

  get bytesWritten(): number {
    return this.written;
  }

  /** The sink the download is piped into; each chunk is readable once it is in the file. */
  writable(): Writable {
    return new Writable({
      highWaterMark: 1 << 20,
      writev: (chunks, callback) => {
        writevAll(
          this.file,
          chunks.map((c) => c.chunk as Buffer),
        ).then((n) => {
          this.written += n;
          this.wake();
          callback();
        }, callback);
      },
    });
  }

  /** Every byte is written. */
  finish(): void {
    this.finished = true;
    this.wake();
  }

  /** The bytes were verified: client readers may deliver the end. */
  release(): void {
    this.released = true;
    this.wake();
  }

  /** The download or its verification failed: every reader is destroyed with `err`. */
  fail(err: Error): void {
    this.error ??= err;
    this.wake();
  }

  /**
   * A reader from byte 0, or undefined once the file is gone. `gated` readers are for clients
   * (see the class comment).
   */
  reader(gated: boolean): Readable | undefined {
    if (this.disposed || this.error !== undefined) return undefined;
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return undefined;
    }
    return new SpoolReader(this, fd, gated);
  }

  /** How far a reader may read now. */
  limit(gated: boolean): number {
    if (!gated || this.released || this.expectedSize === undefined) return this.written;
    return Math.min(this.written, this.expectedSize - 1);
  }

  /** Whether a reader that has read `position` bytes may end, or must fail with the error. */
  state(position: number, gated: boolean): 'more' | 'end' | Error {
    if (this.error !== undefined) return this.error;
    if (this.finished && position >= this.written && (!gated || this.released)) return 'end';
    return 'more';
  }

  /** Calls `wake` once, at the next change. */
  wait(wake: () => void): () => void {
    this.waiters.add(wake);
    return () => this.waiters.delete(wake);
  }

  private wake(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const w of waiting) w();
  }

  /** Closes and removes the file; readers already open keep reading it. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
    await this.file.close().catch(() => undefined);
  }
}

class SpoolReader extends Readable {
  private position = 0;
  private reading = false;
  private unwait: (() => void) | undefined;

  constructor(
    private readonly spool: Spool,
    private fd: number | undefined,
    private readonly gated: boolean,
  ) {
    super({ highWaterMark: READ_CHUNK });
  }

  override _read(): void {
    this.pump();
  }

  private pump(): void {
    if (this.reading || this.destroyed || this.fd === undefined) return;
    const state = this.spool.state(this.position, this.gated);
    if (state instanceof Error) {
      this.destroy(state);
      return;
    }
    const limit = this.spool.limit(this.gated);
    if (this.position < limit) {
      const length = Math.min(limit - this.position, READ_CHUNK);
      const buffer = Buffer.allocUnsafe(length);
      this.reading = true;
      read(this.fd, buffer, 0, length, this.position, (err, bytes) => {
        this.reading = false;
        if (this.destroyed) {
          this.close();
          return;
        }
        if (err || bytes === 0) {
          this.destroy(err ?? new Error('spool file is shorter than written'));
          return;
        }
        this.position += bytes;
        if (this.push(bytes === length ? buffer : buffer.subarray(0, bytes))) this.pump();
      });
      return;
    }
    if (state === 'end') {
      this.push(null);
      return;
    }
    this.unwait = this.spool.wait(() => {
      this.unwait = undefined;
      this.pump();
    });
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.unwait?.();
    // A read in flight still uses the descriptor (whose number could be reused once closed).
    if (!this.reading) this.close();
    callback(err);
  }

  private close(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // closed already
    }
    this.fd = undefined;
  }
}
