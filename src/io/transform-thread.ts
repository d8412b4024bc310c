// Worker-thread side of io/off-thread-transform.ts: runs the named codec of many streams, so
// their CPU work (bzip2's pure-JavaScript decoder, zstd and its blocking waits, hashing the
// output) happens here, never on the event loop.
import { createHash, type Hash } from 'node:crypto';
import { createRequire } from 'node:module';
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { Bzip2Decoder } from './bzip2-decoder.js';

/** What a thread can run: zstd compression (level, nbWorkers) and bzip2 decompression. */
export type CodecSpec = { codec: 'zstd-compress'; level: number; workers: number } | { codec: 'bzip2-decompress' };

/**
 * Main thread → codec thread. Input buffers travel back with their `ack`, to be filled again;
 * `read` returns credit for output the main thread has passed on.
 */
export type ToThread =
  | { type: 'open'; id: number; spec: CodecSpec; hash: boolean }
  | { type: 'data'; id: number; buffer: ArrayBuffer; length: number }
  | { type: 'read'; id: number; bytes: number }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number };

/** Codec thread → main thread. `end` carries the length (and, if asked, SHA-256) of the output. */
export type FromThread =
  | { type: 'data'; id: number; chunk: Uint8Array }
  | { type: 'ack'; id: number; buffer: ArrayBuffer }
  | { type: 'end'; id: number; sha256: Uint8Array | undefined; bytes: number }
  | { type: 'error'; id: number; message: string };

type Emit = (chunk: Uint8Array) => void;

/** A codec as the host drives it, in bounded units of work. */
interface Codec {
  /** Takes input; the buffer returns to the main thread afterwards, so keep a copy if needed. */
  write(input: Uint8Array, emit: Emit): void;
  /** No more input. */
  end(): void;
  /** One bounded unit of work; false when none is possible until more input (after end: done). */
  step(emit: Emit): boolean;
}

/**
 * Output a stream may have sent that the main thread has not passed on yet: past this the
 * stream stops (its input slabs wait here, unacknowledged, which stops its writer in turn).
 * One unit of work may go beyond it: a zstd slab's output or one bzip2 block.
 */
const OUTPUT_WINDOW = 2 * 1024 * 1024;

/**
 * This thread, and the zstd threads it starts (Linux threads inherit their creator's nice
 * value), run at a lower priority than the event loop: when the CPU is short, codecs wait, not
 * the requests. Lowering one's own priority needs no privilege; where it fails, it is skipped.
 */
const NICE = 5;
try {
  setPriority(0, NICE);
} catch {
  // Not supported here: the codecs simply compete on equal terms.
}

// --- zstd compression -------------------------------------------------------------------------

interface CCtx {
  setParameter(param: number, value: number): void;
  compressStream2(output: Uint8Array, input: Uint8Array, endOp: number): [number, number, number];
}
interface ZstdBinding {
  CCtx: new () => CCtx;
  CParameter: { compressionLevel: number; nbWorkers: number; jobSize: number };
  EndDirective: { continue: number; end: number };
  cStreamOutSize(): number;
}

/**
 * Size of a job in zstd's multi-threaded mode. zstd's default (4 windows: 8 MiB at level 3)
 * holds several jobs' input and output per worker: about 120 MB more resident memory on
 * incompressible input, per stream. 2 MiB jobs cost about 20 MB, the same CPU time, and files
 * about 0.5% larger (measured on 300 MB of /usr/lib at level 3, 2 workers).
 */
const JOB_SIZE = 2 * 1024 * 1024;

let zstdBinding: ZstdBinding | undefined;
// One output buffer, reused: in multi-threaded mode most calls produce nothing, and what they
// do produce leaves as an exact-size copy.
let zstdOut: Uint8Array | undefined;

/** Compresses each slab as it comes (output is never much larger than input); flushes at the end. */
function zstdCompress(level: number, workers: number): Codec {
  const binding = (zstdBinding ??= createRequire(import.meta.url)('zstd-napi/binding') as ZstdBinding);
  const out = (zstdOut ??= new Uint8Array(binding.cStreamOutSize()));
  const cctx = new binding.CCtx();
  cctx.setParameter(binding.CParameter.compressionLevel, level);
  if (workers > 0) {
    cctx.setParameter(binding.CParameter.nbWorkers, workers);
    cctx.setParameter(binding.CParameter.jobSize, JOB_SIZE);
  }
  let ended = false;
  let flushed = false;
  const run = (input: Uint8Array, endOp: number, emit: Emit): void => {
    let rest = input;
    for (;;) {
      const [remaining, produced, consumed] = cctx.compressStream2(out, rest, endOp);
      if (produced > 0) emit(out.slice(0, produced));
      rest = rest.subarray(consumed);
      if (rest.length === 0 && (endOp === binding.EndDirective.continue || remaining === 0)) return;
    }
  };
  return {
    write: (input, emit) => run(input, binding.EndDirective.continue, emit),
    end: () => void (ended = true),
    step(emit) {
      if (!ended || flushed) return false;
      flushed = true;
      run(new Uint8Array(0), binding.EndDirective.end, emit);
      return true;
    },
  };
}

// --- bzip2 decompression ----------------------------------------------------------------------

/** Buffers input (a copy) and decodes one block per step. */
function bzip2Decompress(): Codec {
  const decoder = new Bzip2Decoder();
  return {
    write: (input) => decoder.write(input),
    end: () => decoder.end(),
    step: (emit) => decoder.step(emit),
  };
}

function openCodec(spec: CodecSpec): Codec {
  switch (spec.codec) {
    case 'zstd-compress':
      return zstdCompress(spec.level, spec.workers);
    case 'bzip2-decompress':
      return bzip2Decompress();
  }
}

// --- the host ---------------------------------------------------------------------------------

interface Stream {
  id: number;
  codec: Codec;
  emit: Emit;
  /** Input slabs not yet given to the codec. */
  input: { buffer: ArrayBuffer; length: number }[];
  /** Output sent and not yet credited back by `read`. */
  unread: number;
  /** `end` arrived: once `input` is empty, the codec is told. */
  ending: boolean;
  codecEnded: boolean;
  hash: Hash | undefined;
  bytes: number;
}

const port = parentPort!;
const streams = new Map<number, Stream>();
/** Streams that may have work; one unit each per turn of this thread's loop, in turn. */
const runnable = new Set<Stream>();
let scheduled = false;

function wake(stream: Stream): void {
  runnable.add(stream);
  if (!scheduled) {
    scheduled = true;
    setImmediate(turn);
  }
}

/**
 * One unit of work for every runnable stream, then back to this thread's loop, so messages
 * (credit, abort) are seen between units and streams sharing the thread take turns.
 */
function turn(): void {
  scheduled = false;
  for (const stream of [...runnable]) {
    runnable.delete(stream);
    if (streams.get(stream.id) !== stream) continue;
    try {
      if (unit(stream)) runnable.add(stream);
    } catch (err) {
      fail(stream.id, err);
    }
  }
  if (runnable.size > 0 && !scheduled) {
    scheduled = true;
    setImmediate(turn);
  }
}

/** Does one unit of the stream's work; false when it must wait for a message. */
function unit(stream: Stream): boolean {
  if (stream.unread >= OUTPUT_WINDOW) return false;
  if (stream.codec.step(stream.emit)) return true;
  const next = stream.input.shift();
  if (next !== undefined) {
    stream.codec.write(new Uint8Array(next.buffer, 0, next.length), stream.emit);
    port.postMessage({ type: 'ack', id: stream.id, buffer: next.buffer } satisfies FromThread, [next.buffer]);
    return true;
  }
  if (!stream.ending) return false;
  if (!stream.codecEnded) {
    stream.codecEnded = true;
    stream.codec.end();
    return true;
  }
  // Ended and drained: the codec has produced everything.
  streams.delete(stream.id);
  const sha256 = stream.hash === undefined ? undefined : new Uint8Array(stream.hash.digest());
  port.postMessage({ type: 'end', id: stream.id, sha256, bytes: stream.bytes } satisfies FromThread);
  return false;
}

function fail(id: number, err: unknown): void {
  const stream = streams.get(id);
  if (stream) runnable.delete(stream);
  streams.delete(id);
  port.postMessage({ type: 'error', id, message: err instanceof Error ? err.message : String(err) } satisfies FromThread);
}

port.on('message', (msg: ToThread) => {
  try {
    if (msg.type === 'open') {
      const stream: Stream = {
        id: msg.id,
        codec: openCodec(msg.spec),
        emit: (chunk) => {
          stream.hash?.update(chunk);
          stream.bytes += chunk.length;
          stream.unread += chunk.length;
          // Sent whole when the chunk is most of its buffer, else copied out of it.
          const whole = chunk.byteLength >= chunk.buffer.byteLength / 2 ? chunk : chunk.slice();
          port.postMessage({ type: 'data', id: stream.id, chunk: whole } satisfies FromThread, [whole.buffer as ArrayBuffer]);
        },
        input: [],
        unread: 0,
        ending: false,
        codecEnded: false,
        hash: msg.hash ? createHash('sha256') : undefined,
        bytes: 0,
      };
      streams.set(msg.id, stream);
      return;
    }
    const stream = streams.get(msg.id);
    switch (msg.type) {
      case 'data':
        // After an error the stream is gone; the buffer goes back all the same.
        if (stream) stream.input.push({ buffer: msg.buffer, length: msg.length });
        else port.postMessage({ type: 'ack', id: msg.id, buffer: msg.buffer } satisfies FromThread, [msg.buffer]);
        break;
      case 'read':
        if (stream) stream.unread -= msg.bytes;
        break;
      case 'end':
        if (stream) stream.ending = true;
        break;
      case 'abort':
        if (stream) runnable.delete(stream);
        streams.delete(msg.id);
        return;
    }
    if (stream) wake(stream);
  } catch (err) {
    fail(msg.id, err);
  }
});
