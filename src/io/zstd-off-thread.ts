import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { FromThread, ToThread } from './zstd-thread.js';

/** Input is copied into buffers of this size, each moved to the zstd thread and back. */
const SLAB = 1024 * 1024;
/** Slabs a stream may have at the zstd thread at once: its backpressure. */
const SLABS_IN_FLIGHT = 4;
/** Threads shared by every stream; a second one starts only while two streams run at once. */
const MAX_THREADS = 2;

interface ThreadHandle {
  worker: Worker;
  streams: Map<number, ZstdOffThread>;
}

const threads: ThreadHandle[] = [];
let nextId = 1;

function threadFor(): ThreadHandle {
  const idle = threads.find((t) => t.streams.size === 0);
  if (idle) return idle;
  if (threads.length < MAX_THREADS) {
    const worker = new Worker(new URL('./zstd-thread.js', import.meta.url));
    const handle: ThreadHandle = { worker, streams: new Map() };
    worker.on('message', (msg: FromThread) => handle.streams.get(msg.id)?.fromThread(msg));
    worker.on('error', (err) => {
      threads.splice(threads.indexOf(handle), 1);
      for (const s of [...handle.streams.values()]) s.destroy(err);
      handle.streams.clear();
    });
    worker.unref();
    threads.push(handle);
    return handle;
  }
  return threads.reduce((a, b) => (b.streams.size < a.streams.size ? b : a));
}

/**
 * A zstd compressor whose work runs on a worker thread (shared by all streams), which runs zstd
 * with `workers` threads of its own and hashes the output: the event loop only copies input
 * into 1 MiB slabs (moved to the thread and back, so they are reused) and takes the compressed
 * chunks out. Needed because zstd's multi-threaded mode, called on the event loop, blocks it
 * whenever input arrives faster than its threads compress (single calls of 50-200 ms measured
 * with a fast producer). Backpressure: at most 4 slabs at the thread, then the readable side.
 *
 * `digest()` and `bytes` (SHA-256 and length of the compressed output) are set once the
 * stream has finished, so no hashing of the output is needed on the event loop either.
 */
export class ZstdOffThread extends Transform {
  private readonly id = nextId++;
  private readonly thread: ThreadHandle;
  private readonly free: ArrayBuffer[] = [];
  private slab: Uint8Array | undefined;
  private filled = 0;
  private atThread = 0;
  private waiting: TransformCallback | undefined;
  private flushed: TransformCallback | undefined;
  private released = false;
  private sha256: Uint8Array | undefined;
  /** Length of the compressed output; final once the stream has finished. */
  bytes = 0;

  constructor(opts: { level: number; workers: number }) {
    super({ readableHighWaterMark: SLAB });
    this.thread = threadFor();
    this.thread.streams.set(this.id, this);
    // A stream in progress keeps the process alive; idle threads do not.
    this.thread.worker.ref();
    this.send({ type: 'open', id: this.id, level: opts.level, workers: opts.workers });
  }

  /** SHA-256 of the compressed output; only after the stream has finished. */
  digest(): Uint8Array {
    if (this.sha256 === undefined) throw new Error('ZstdOffThread.digest() called before the stream finished');
    return this.sha256;
  }

  private send(msg: ToThread, transfer: ArrayBuffer[] = []): void {
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

  /** @internal */
  fromThread(msg: FromThread): void {
    switch (msg.type) {
      case 'data':
        this.push(Buffer.from(msg.chunk.buffer, msg.chunk.byteOffset, msg.chunk.byteLength));
        return;
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
        this.release();
        const cb = this.flushed;
        this.flushed = undefined;
        cb?.();
        return;
      }
      case 'error':
        this.release();
        this.destroy(new Error(`zstd compression failed: ${msg.message}`));
        return;
    }
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

export function createZstdOffThread(opts: { level: number; workers: number }): ZstdOffThread {
  return new ZstdOffThread(opts);
}
