// Worker-thread side of io/off-thread-transform.ts: runs the named codec of many streams, so
// their CPU work (decoding, NAR validation, SHA-256, zstd and its blocking waits) happens here,
// never on the event loop.
import { createHash, type Hash } from 'node:crypto';
import { createRequire } from 'node:module';
import { setPriority } from 'node:os';
import type { Transform } from 'node:stream';
import { parentPort, type MessagePort } from 'node:worker_threads';
import { createBrotliDecompress, createGunzip } from 'node:zlib';
import { isNarhubError } from '../errors.js';
import { formatListing } from '../nix/nar/listing.js';
import { NarParser } from '../nix/nar/nar-parser.js';
import { Bzip2Decoder } from './bzip2-decoder.js';

/** What a thread decodes: every compression narhub accepts. */
export type Decompression = 'zstd' | 'gzip' | 'br' | 'xz' | 'bzip2';

/**
 * What a thread can run: `decompress`; `sha256`, a sink (hash and length of the
 * input); and `nar`, one pass over a NAR that validates it against every NAR rule while hashing
 * and listing it and, with `compress`, compresses it with zstd, which is then its output
 * (without, it is a sink). Sinks report their result with the end.
 */
export type CodecSpec =
  | { codec: 'decompress'; compression: Decompression }
  | { codec: 'sha256' }
  | { codec: 'nar'; listing: boolean; compress?: { level: number; workers: number } };

/** What `sha256` reports. */
export interface Sha256Result {
  sha256: Uint8Array;
  bytes: number;
}

/** What `nar` reports: the NAR parser's summary, with the listing formatted. */
export interface NarResult {
  /** `sha256:<nix32>`. */
  narHash: string;
  narSize: number;
  /** The `.ls` listing as `formatListing` writes it; undefined without `listing`. */
  listing: string | undefined;
}

/**
 * Main thread → codec thread. Input buffers travel back with their `ack`, to be filled again;
 * `read` returns credit for output the main thread has passed on. A stream opened with `link`
 * sends its output into that port instead of to the main thread; `link` gives a stream the
 * other end, from which it takes input as well (see `LinkMessage`).
 */
export type ToThread =
  | { type: 'open'; id: number; spec: CodecSpec; hash: boolean; link?: MessagePort }
  | { type: 'link'; id: number; port: MessagePort }
  | { type: 'data'; id: number; buffer: ArrayBuffer; length: number }
  | { type: 'read'; id: number; bytes: number }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number };

/**
 * Codec thread → main thread. `end` carries the length (and, if asked, SHA-256) of the output
 * and what the codec reports. `error` carries the code and details of a NarhubError (an invalid
 * NAR), so it comes back as the same error.
 */
export type FromThread =
  | { type: 'data'; id: number; chunk: Uint8Array }
  | { type: 'ack'; id: number; buffer: ArrayBuffer }
  | { type: 'end'; id: number; sha256: Uint8Array | undefined; bytes: number; result: unknown }
  | { type: 'error'; id: number; message: string; code?: string; details?: Record<string, unknown> };

/**
 * Between two linked streams, thread to thread: output chunks (their buffers moved along) and
 * their end one way; credit for what was consumed, with its buffer to be filled again, the other
 * way. The same window as towards the main thread bounds what is on its way.
 */
type LinkMessage =
  | { type: 'data'; buffer: ArrayBuffer; length: number }
  | { type: 'end' }
  | { type: 'read'; bytes: number; buffer: ArrayBuffer };

/**
 * Passes output on (to the main thread or a linked stream). It takes the chunk's buffer along
 * (detaching it) when the chunk is most of it, so a codec emits only buffers it will not write
 * to again.
 */
type Emit = (chunk: Uint8Array) => void;

/** A codec as the host drives it, in bounded units of work. */
interface Codec {
  /**
   * Takes input. The buffer returns to the main thread once this returns, or, if it returns a
   * promise, once that settles: until then the codec may keep reading it.
   */
  write(input: Uint8Array): void | Promise<void>;
  /** No more input; a returned promise settles once the codec has had all of it decoded. */
  end(): void | Promise<void>;
  /** One bounded unit of work; false when none is possible until more input (after end: done). */
  step(): boolean;
  /** Reported with `end`. */
  result?(): unknown;
  /** The stream was dropped: free what the codec holds. */
  destroy?(): void;
}

/**
 * Where a decoder's output goes: `take` gets each piece, valid only during the call (the
 * decoder reuses its buffer); `full` says the output window is full, so a decoder whose work
 * completes elsewhere stops until `wake`s come again.
 */
interface DecoderOutput {
  take(chunk: Uint8Array): void;
  full(): boolean;
}

/**
 * Output a stream may have sent that the main thread has not passed on yet: past this the
 * stream stops (its input slabs wait here, unacknowledged, which stops its writer in turn).
 * One unit of work may go beyond it: a slab's compressed output or one bzip2 block.
 */
const OUTPUT_WINDOW = 2 * 1024 * 1024;

/** Decoded output is produced in pieces of at most this size (one step of the zstd decoder). */
const DECODE_CHUNK = 1024 * 1024;
/** Given-back output buffers a stream keeps: what fits in its window, and one more. */
const SPARE_BUFFERS = OUTPUT_WINDOW / DECODE_CHUNK + 1;

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

const require = createRequire(import.meta.url);

// --- zstd -------------------------------------------------------------------------------------

interface CCtx {
  setParameter(param: number, value: number): void;
  compressStream2(output: Uint8Array, input: Uint8Array, endOp: number): [number, number, number];
}
interface DCtx {
  decompressStream(output: Uint8Array, input: Uint8Array): [number, number, number];
}
interface ZstdBinding {
  CCtx: new () => CCtx;
  DCtx: new () => DCtx;
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
const zstd = (): ZstdBinding => (zstdBinding ??= require('zstd-napi/binding') as ZstdBinding);
// One output buffer, reused: in multi-threaded mode most compression calls produce nothing, and
// what they do produce leaves as an exact-size copy.
let zstdOut: Uint8Array | undefined;

/** Compresses each slab as it comes (output is never much larger than input); flushes at the end. */
function zstdCompress(emit: Emit, level: number, workers: number): Codec {
  const binding = zstd();
  const out = (zstdOut ??= new Uint8Array(binding.cStreamOutSize()));
  const cctx = new binding.CCtx();
  cctx.setParameter(binding.CParameter.compressionLevel, level);
  if (workers > 0) {
    cctx.setParameter(binding.CParameter.nbWorkers, workers);
    cctx.setParameter(binding.CParameter.jobSize, JOB_SIZE);
  }
  let ended = false;
  let flushed = false;
  const run = (input: Uint8Array, endOp: number): void => {
    let rest = input;
    for (;;) {
      const [remaining, produced, consumed] = cctx.compressStream2(out, rest, endOp);
      if (produced > 0) emit(out.slice(0, produced));
      rest = rest.subarray(consumed);
      if (rest.length === 0 && (endOp === binding.EndDirective.continue || remaining === 0)) return;
    }
  };
  return {
    write: (input) => run(input, binding.EndDirective.continue),
    end: () => void (ended = true),
    step() {
      if (!ended || flushed) return false;
      flushed = true;
      run(new Uint8Array(0), binding.EndDirective.end);
      return true;
    },
  };
}

/**
 * Decodes a slab in steps of at most 1 MiB of output, so one step stays short however much the
 * slab expands. Same rules as zstd-napi's DecompressStream (which narhub used on the event
 * loop): several and skippable frames, and an error for a stream that ends inside a frame or
 * goes on with anything that is not a frame. Output is decoded straight into the buffers that
 * leave (`spare` ones again, once a linked stream has given them back).
 */
function zstdDecompress(emit: Emit, spare: () => ArrayBuffer | undefined): Codec {
  const dctx = new (zstd().DCtx)();
  let out = new Uint8Array(DECODE_CHUNK);
  let input: Uint8Array | undefined;
  let consumed: (() => void) | undefined;
  let inFrame = false;
  let ended = false;
  return {
    write(chunk) {
      input = chunk;
      return new Promise((resolve) => (consumed = resolve));
    },
    end() {
      ended = true;
    },
    step() {
      if (input === undefined) {
        if (ended && inFrame) throw new Error('Stream ended in middle of compressed data frame');
        return false;
      }
      const [hint, produced, used] = dctx.decompressStream(out, input);
      input = input.subarray(used);
      const full = produced === out.length;
      if (produced > 0) {
        emit(out.subarray(0, produced));
        // Taken along with the chunk: the next output needs another buffer.
        if (out.byteLength === 0) out = new Uint8Array(spare() ?? new ArrayBuffer(DECODE_CHUNK));
      }
      if (input.length === 0 && (!full || hint === 0)) {
        inFrame = hint !== 0;
        input = undefined;
        consumed?.();
      }
      return true;
    },
  };
}

// --- bzip2 ------------------------------------------------------------------------------------

/** Buffers input (a copy) and decodes one block per step. */
function bzip2Decompress(output: DecoderOutput): Codec {
  const decoder = new Bzip2Decoder();
  return {
    write: (input) => decoder.write(input),
    end: () => decoder.end(),
    step: () => decoder.step((chunk) => output.take(chunk)),
  };
}

// --- decoders that are Node streams: zlib (gzip, brotli) and xz -------------------------------

const XZ_MEMLIMIT = 256 * 1024 * 1024;
/**
 * xz is fed in pieces this size: liblzma (through lzma-native) decodes all it is given at once,
 * queueing every output buffer, so a piece bounds what one write can pile up here (as the 64 KiB
 * socket chunks it was fed on the event loop did). zlib waits for its reader: whole slabs.
 */
const XZ_PIECE = 64 * 1024;

/**
 * Drives a Node Transform on this thread (its work runs on libuv's pool or liblzma's own
 * thread; what comes out arrives here), pausing it while the output window is full.
 */
function streamDecoder(output: DecoderOutput, wake: () => void, stream: Transform, piece: number): Codec {
  let error: Error | undefined;
  let ended = false;
  const whenEnded: (() => void)[] = [];
  stream.on('data', (chunk: Buffer) => {
    output.take(chunk);
    if (output.full()) stream.pause();
  });
  stream.on('error', (err: Error) => {
    error = err;
    wake();
  });
  stream.on('end', () => {
    ended = true;
    for (const resolve of whenEnded.splice(0)) resolve();
  });
  const written = (chunk: Uint8Array) =>
    new Promise<void>((resolve, reject) => {
      stream.write(chunk, (err?: Error | null) => (err ? reject(err) : resolve()));
    });
  return {
    async write(input) {
      for (let at = 0; at < input.length; at += piece) await written(input.subarray(at, at + piece));
    },
    end() {
      stream.end();
      return new Promise<void>((resolve, reject) => {
        if (ended) resolve();
        else whenEnded.push(resolve);
        stream.once('error', reject);
      });
    },
    step() {
      if (error) throw error;
      if (stream.isPaused() && !output.full()) stream.resume();
      return false;
    },
    destroy: () => void stream.destroy(),
  };
}

interface Lzma {
  createDecompressor(options: { memlimit: number; bufsize: number }): Transform;
}

/**
 * The decoders of io/compression.ts's `createDecompressor`, with the same options, here; output
 * is one unit's worth: a zstd step, a bzip2 block, what zlib or liblzma made of a piece.
 */
function decompress(host: Host, compression: Decompression): Codec {
  const { emit, wake, full } = host;
  // A copy (Uint8Array's slice: a Buffer's is a view), so no decoder's buffer is taken along.
  const output: DecoderOutput = { take: (chunk) => emit(Uint8Array.prototype.slice.call(chunk)), full };
  switch (compression) {
    case 'zstd':
      return zstdDecompress(emit, host.spare);
    case 'bzip2':
      // Each block's output is in buffers of its own: they can go as they are.
      return bzip2Decompress({ take: emit, full });
    case 'gzip':
      // Concatenated members, as gzip(1) does.
      return streamDecoder(output, wake, createGunzip({ chunkSize: DECODE_CHUNK }), Infinity);
    case 'br':
      return streamDecoder(output, wake, createBrotliDecompress({ chunkSize: DECODE_CHUNK }), Infinity);
    case 'xz': {
      const lzma = require('lzma-native') as Lzma;
      return streamDecoder(
        output,
        wake,
        lzma.createDecompressor({ memlimit: XZ_MEMLIMIT, bufsize: DECODE_CHUNK }),
        XZ_PIECE,
      );
    }
  }
}

// --- sha256 -----------------------------------------------------------------------------------

function sha256(): Codec {
  const hash = createHash('sha256');
  let bytes = 0;
  return {
    write(input) {
      hash.update(input);
      bytes += input.length;
    },
    end: () => undefined,
    step: () => false,
    result: (): Sha256Result => ({ sha256: new Uint8Array(hash.digest()), bytes }),
  };
}

// --- nar: validate (and compress), in one pass ------------------------------------------------

/**
 * The NAR parser (nix/nar/nar-parser.ts: every rule, its errors and summary) over every slab, which then goes on to zstd with `compress`: one pass, whose output
 * (if any) is the compressed NAR.
 */
function nar(emit: Emit, spec: Extract<CodecSpec, { codec: 'nar' }>): Codec {
  const parser = new NarParser<boolean>({ listing: spec.listing });
  const compressor = spec.compress ? zstdCompress(emit, spec.compress.level, spec.compress.workers) : undefined;
  let summary: NarResult | undefined;
  let ended = false;
  return {
    write(input) {
      parser.update(input);
      compressor?.write(input);
    },
    end: () => void (ended = true),
    step() {
      if (!ended) return false;
      if (summary === undefined) {
        const s = parser.finish();
        // Formatted here: the listing of a large tree is a large object, its text one string.
        summary = {
          narHash: s.narHash,
          narSize: s.narSize,
          listing: s.listing === undefined ? undefined : formatListing(s.listing),
        };
        compressor?.end();
        return true;
      }
      return compressor?.step() ?? false;
    },
    result: () => summary,
  };
}

/** What a codec may use of its host. */
interface Host {
  emit: Emit;
  /** Asks for a step: work that completed elsewhere (libuv's pool, liblzma's thread) is in. */
  wake(): void;
  /** The output window is full: produce no more until woken. */
  full(): boolean;
  /** An output buffer a linked stream has given back, if any. */
  spare(): ArrayBuffer | undefined;
}

function openCodec(spec: CodecSpec, host: Host): Codec {
  switch (spec.codec) {
    case 'decompress':
      return decompress(host, spec.compression);
    case 'sha256':
      return sha256();
    case 'nar':
      return nar(host.emit, spec);
  }
}

// --- the host ---------------------------------------------------------------------------------

interface Stream {
  id: number;
  codec: Codec;
  /** Input not yet given to the codec: slabs from the main thread, chunks from a linked stream. */
  input: { buffer: ArrayBuffer; length: number; linked: boolean }[];
  /** Output sent and not yet credited back by `read`. */
  unread: number;
  /** `end` arrived: once `input` is empty (and a linked input has ended too), the codec is told. */
  ending: boolean;
  codecEnded: boolean;
  /** A write or end that completes asynchronously is under way. */
  busy: boolean;
  hash: Hash | undefined;
  bytes: number;
  /** Where the output goes instead of the main thread. */
  linkOut: MessagePort | undefined;
  /** Output buffers the linked stream gave back. */
  spare: ArrayBuffer[];
  /** Where more input comes from, and whether it has ended. */
  linkIn: { port: MessagePort; ended: boolean } | undefined;
}

const port = parentPort!;
const streams = new Map<number, Stream>();
/** Streams that may have work; one unit each per turn of this thread's loop, in turn. */
const runnable = new Set<Stream>();
let scheduled = false;

function wake(stream: Stream): void {
  if (streams.get(stream.id) !== stream) return;
  runnable.add(stream);
  if (!scheduled) {
    scheduled = true;
    setImmediate(turn);
  }
}

/**
 * One unit of work for every runnable stream, then back to this thread's loop, so messages
 * (credit, abort) and asynchronous codec work are seen between units and streams sharing the
 * thread take turns.
 */
function turn(): void {
  scheduled = false;
  for (const stream of [...runnable]) {
    runnable.delete(stream);
    if (streams.get(stream.id) !== stream) continue;
    try {
      if (unit(stream)) runnable.add(stream);
    } catch (err) {
      fail(stream, err);
    }
  }
  if (runnable.size > 0 && !scheduled) {
    scheduled = true;
    setImmediate(turn);
  }
}

/** The stream waits for asynchronous codec work, then goes on (`then` first). */
function awaitCodec(stream: Stream, work: Promise<void>, then?: () => void): void {
  stream.busy = true;
  work.then(
    () => {
      stream.busy = false;
      then?.();
      wake(stream);
    },
    (err: unknown) => fail(stream, err),
  );
}

/** Gives consumed input back: a slab to the main thread, credit to the linked stream. */
function consumed(stream: Stream, input: Stream['input'][number]): void {
  if (!input.linked)
    port.postMessage({ type: 'ack', id: stream.id, buffer: input.buffer } satisfies FromThread, [input.buffer]);
  else
    stream.linkIn?.port.postMessage({ type: 'read', bytes: input.length, buffer: input.buffer } satisfies LinkMessage, [
      input.buffer,
    ]);
}

/** Does one unit of the stream's work; false when it must wait for a message or its codec. */
function unit(stream: Stream): boolean {
  if (stream.unread >= OUTPUT_WINDOW) return false;
  if (stream.codec.step()) return true;
  if (stream.busy) return false;
  const next = stream.input.shift();
  if (next !== undefined) {
    const pending = stream.codec.write(new Uint8Array(next.buffer, 0, next.length));
    if (pending === undefined) consumed(stream, next);
    else awaitCodec(stream, pending, () => consumed(stream, next));
    return true;
  }
  if (!stream.ending || (stream.linkIn !== undefined && !stream.linkIn.ended)) return false;
  if (!stream.codecEnded) {
    stream.codecEnded = true;
    const pending = stream.codec.end();
    if (pending !== undefined) awaitCodec(stream, pending);
    return true;
  }
  // Ended and drained: the codec has produced everything.
  streams.delete(stream.id);
  stream.linkIn?.port.close();
  stream.linkOut?.postMessage({ type: 'end' } satisfies LinkMessage);
  const sha256 = stream.hash === undefined ? undefined : new Uint8Array(stream.hash.digest());
  port.postMessage({
    type: 'end',
    id: stream.id,
    sha256,
    bytes: stream.bytes,
    result: stream.codec.result?.(),
  } satisfies FromThread);
  return false;
}

/** Drops a stream and tells the main thread why, once (a stream already dropped stays quiet). */
function fail(stream: Stream, err: unknown): void {
  if (streams.get(stream.id) !== stream) return;
  drop(stream);
  const message = err instanceof Error ? err.message : String(err);
  const msg: FromThread = isNarhubError(err)
    ? { type: 'error', id: stream.id, message, code: err.code, ...(err.details ? { details: err.details } : {}) }
    : { type: 'error', id: stream.id, message };
  port.postMessage(msg);
}

function drop(stream: Stream): void {
  runnable.delete(stream);
  streams.delete(stream.id);
  // The linked stream is dropped by the main thread too (its pipeline fails).
  stream.linkIn?.port.close();
  stream.linkOut?.close();
  try {
    stream.codec.destroy?.();
  } catch {
    // Failing already; nothing more to free.
  }
}

function open(id: number, spec: CodecSpec, hash: boolean, link: MessagePort | undefined): void {
  const stream: Stream = {
    id,
    codec: undefined as unknown as Codec,
    input: [],
    unread: 0,
    ending: false,
    codecEnded: false,
    busy: false,
    hash: hash ? createHash('sha256') : undefined,
    bytes: 0,
    linkOut: link,
    spare: [],
    linkIn: undefined,
  };
  const emit: Emit = (chunk) => {
    if (streams.get(id) !== stream) return;
    stream.hash?.update(chunk);
    stream.bytes += chunk.length;
    stream.unread += chunk.length;
    // Sent whole when the chunk is most of its buffer (and, to a linked stream, starts it),
    // else copied out of it.
    const whole =
      chunk.byteLength >= chunk.buffer.byteLength / 2 && (!stream.linkOut || chunk.byteOffset === 0)
        ? chunk
        : Uint8Array.prototype.slice.call(chunk);
    const buffer = whole.buffer as ArrayBuffer;
    if (stream.linkOut)
      stream.linkOut.postMessage({ type: 'data', buffer, length: whole.byteLength } satisfies LinkMessage, [buffer]);
    else port.postMessage({ type: 'data', id, chunk: whole } satisfies FromThread, [buffer]);
  };
  if (link) {
    link.on('message', (msg: LinkMessage) => {
      if (msg.type !== 'read' || streams.get(id) !== stream) return;
      stream.unread -= msg.bytes;
      if (msg.buffer.byteLength === DECODE_CHUNK && stream.spare.length < SPARE_BUFFERS) stream.spare.push(msg.buffer);
      wake(stream);
    });
  }
  streams.set(id, stream);
  try {
    stream.codec = openCodec(spec, {
      emit,
      wake: () => wake(stream),
      full: () => stream.unread >= OUTPUT_WINDOW,
      spare: () => stream.spare.pop(),
    });
  } catch (err) {
    fail(stream, err);
  }
}

/** Input for `id` from a linked stream on this or another thread. */
function linkIn(id: number, linked: MessagePort): void {
  const stream = streams.get(id);
  if (!stream) {
    linked.close();
    return;
  }
  stream.linkIn = { port: linked, ended: false };
  linked.on('message', (msg: LinkMessage) => {
    if (streams.get(id) !== stream) return;
    if (msg.type === 'data') stream.input.push({ buffer: msg.buffer, length: msg.length, linked: true });
    else if (msg.type === 'end') stream.linkIn!.ended = true;
    wake(stream);
  });
}

port.on('message', (msg: ToThread) => {
  if (msg.type === 'open') {
    open(msg.id, msg.spec, msg.hash, msg.link);
    return;
  }
  if (msg.type === 'link') {
    linkIn(msg.id, msg.port);
    return;
  }
  const stream = streams.get(msg.id);
  switch (msg.type) {
    case 'data':
      // After an error the stream is gone; the buffer goes back all the same.
      if (stream) stream.input.push({ buffer: msg.buffer, length: msg.length, linked: false });
      else port.postMessage({ type: 'ack', id: msg.id, buffer: msg.buffer } satisfies FromThread, [msg.buffer]);
      break;
    case 'read':
      if (stream) stream.unread -= msg.bytes;
      break;
    case 'end':
      if (stream) stream.ending = true;
      break;
    case 'abort':
      if (stream) drop(stream);
      return;
  }
  if (stream) wake(stream);
});
