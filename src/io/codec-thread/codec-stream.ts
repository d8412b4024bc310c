import { Transform, type TransformCallback } from 'node:stream';
import { finished } from 'node:stream/promises';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { NarhubError, type ErrorCode } from '../../errors.js';
import { type ThreadHandle, threadFor } from './pool.js';
import type { CodecSpec, FromThread, ToThread } from './protocol.js';

/** Input is copied into buffers of this size, each moved to the codec thread and back. */
const SLAB = 1024 * 1024;
/** Slabs a stream may have at the codec thread at once: its input backpressure. */
const SLABS_IN_FLIGHT = 4;

/** How a codec's failure reads (`<this>: <reason>`), unless it is a NarhubError. */
function failureOf(spec: CodecSpec): string {
  switch (spec.codec) {
    case 'decompress':
      return `${spec.compression} decompression failed`;
    case 'zstd':
      return 'zstd compression failed';
    case 'sha256':
      return 'hashing failed';
    case 'nar':
      return spec.compress ? 'NAR validation or compression failed' : 'NAR validation failed';
  }
}

let nextId = 1;

/**
 * A Transform whose codec runs on a codec thread shared by all such streams (`worker.ts`,
 * `pool.ts`): the event loop only copies input into 1 MiB slabs (moved to the thread and back,
 * so they are reused) and passes on the output chunks the thread moves over.
 *
 * Backpressure both ways: at most 4 slabs at the thread, and the thread stops once 2 MiB of
 * its output wait here unread (a decompressor's output can be many times its input), holding
 * further slabs, which in turn holds the writer. Destroying the stream tells the thread to drop
 * it; a codec error (corrupt input) destroys the stream with that error: a NarhubError thrown on
 * the thread (an invalid NAR) comes back with its code, message and details, anything else as
 * `<codec> failed: <message>`.
 *
 * With `outputTo`, the output goes from this stream's thread straight to that stream's thread
 * (a MessageChannel between them, under the same window), never through the event loop: this
 * stream's readable side stays empty and ends when all output has been handed over, so
 * `pipeline(this, outputTo)` ends the other stream at the right time and fails both together.
 * The two run on different threads where possible: a decoder beside the validator it feeds.
 *
 * `bytes` (length of the output) is set once the stream has finished; so is `digest()`, its
 * SHA-256, computed on the thread when `hashOutput` is asked for, and `codecResult`, what a
 * sink codec reports (`io/nar-pass.ts`, `io/sha256-sink.ts`).
 */
export class CodecStream extends Transform {
  private readonly id = nextId++;
  private readonly thread: ThreadHandle;
  private readonly spec: CodecSpec;
  private readonly free: ArrayBuffer[] = [];
  private slab: Uint8Array | undefined;
  private filled = 0;
  private atThread = 0;
  /** Output pushed but not yet credited to the thread (waiting for the reader to want more). */
  private owed = 0;
  private waiting: TransformCallback | undefined;
  private flushed: TransformCallback | undefined;
  private released = false;
  private sha256: Uint8Array | undefined;
  /** What the codec reported at the end; set once the stream has finished. */
  protected codecResult: unknown;
  /** Length of the output; final once the stream has finished. */
  bytes = 0;

  constructor(spec: CodecSpec, opts: { hashOutput?: boolean; outputTo?: CodecStream } = {}) {
    super({ readableHighWaterMark: SLAB });
    this.spec = spec;
    const target = opts.outputTo;
    this.thread = threadFor(target?.thread);
    this.thread.streams.set(this.id, this);
    // A stream in progress keeps the process alive; idle threads do not.
    this.thread.worker.ref();
    if (target === undefined) {
      this.send({ type: 'open', id: this.id, spec, hash: opts.hashOutput ?? false });
      return;
    }
    const { port1, port2 } = new MessageChannel();
    target.send({ type: 'link', id: target.id, port: port2 }, [port2]);
    this.send({ type: 'open', id: this.id, spec, hash: opts.hashOutput ?? false, link: port1 }, [port1]);
  }

  /**
   * What the codec reports, once the writable side has finished; rejects with the error that
   * failed the stream. For subclasses, which call it in their constructor.
   */
  protected codecOutcome<R>(): Promise<R> {
    const outcome = finished(this, { readable: false }).then(() => this.codecResult as R);
    // Observed here, so a failure nobody asked about is not an unhandled rejection.
    outcome.catch(() => undefined);
    return outcome;
  }

  /** SHA-256 of the output; only after the stream has finished, and if `hashOutput` was set. */
  digest(): Uint8Array {
    if (this.sha256 === undefined) throw new Error('digest() called before the stream finished, or without hashOutput');
    return this.sha256;
  }

  private send(msg: ToThread, transfer: (ArrayBuffer | MessagePort)[] = []): void {
    this.thread.worker.postMessage(msg, transfer);
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.thread.streams.delete(this.id);
    if (this.thread.streams.size === 0) this.thread.worker.unref();
  }

  /** Sends the slab being filled, if it holds anything. */
  private sendSlab(): void {
    if (!this.slab || this.filled === 0) return;
    const buffer = this.slab.buffer as ArrayBuffer;
    this.send({ type: 'data', id: this.id, buffer, length: this.filled }, [buffer]);
    this.atThread++;
    this.slab = undefined;
    this.filled = 0;
  }

  /** Gives the thread credit for what has been passed on. */
  private credit(): void {
    if (this.owed === 0 || this.released) return;
    this.send({ type: 'read', id: this.id, bytes: this.owed });
    this.owed = 0;
  }

  /** @internal */
  fromThread(msg: FromThread): void {
    switch (msg.type) {
      case 'data': {
        this.owed += msg.chunk.byteLength;
        // Credit at once while the reader keeps up; otherwise when it asks for more (_read).
        if (this.push(Buffer.from(msg.chunk.buffer, msg.chunk.byteOffset, msg.chunk.byteLength))) this.credit();
        return;
      }
      case 'ack': {
        this.atThread--;
        this.free.push(msg.buffer);
        const cb = this.waiting;
        if (cb && this.atThread < SLABS_IN_FLIGHT) {
          this.waiting = undefined;
          cb();
        }
        return;
      }
      case 'end': {
        this.sha256 = msg.sha256;
        this.bytes = msg.bytes;
        this.codecResult = msg.result;
        this.release();
        const cb = this.flushed;
        this.flushed = undefined;
        cb?.();
        return;
      }
      case 'error':
        this.release();
        this.destroy(
          msg.code === undefined
            ? new Error(`${failureOf(this.spec)}: ${msg.message}`)
            : new NarhubError(
                msg.code as ErrorCode,
                msg.message,
                msg.details === undefined ? undefined : { details: msg.details },
              ),
        );
        return;
    }
  }

  override _read(size: number): void {
    super._read(size);
    this.credit();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let offset = 0;
    while (offset < chunk.length) {
      this.slab ??= new Uint8Array(this.free.pop() ?? new ArrayBuffer(SLAB));
      const n = Math.min(chunk.length - offset, SLAB - this.filled);
      this.slab.set(chunk.subarray(offset, offset + n), this.filled);
      this.filled += n;
      offset += n;
      if (this.filled === SLAB) this.sendSlab();
    }
    if (this.atThread < SLABS_IN_FLIGHT) callback();
    else this.waiting = callback;
  }

  override _flush(callback: TransformCallback): void {
    this.sendSlab();
    this.flushed = callback;
    this.send({ type: 'end', id: this.id });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.released) {
      this.send({ type: 'abort', id: this.id });
      this.release();
    }
    callback(error);
  }
}
