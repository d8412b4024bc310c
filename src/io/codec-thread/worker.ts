// A codec thread: runs the codecs (io/codecs/) of many streams, opened from the main thread by
// codec-stream.ts, so their CPU work (decoding, NAR validation, SHA-256, zstd and its blocking
// waits) happens here, never on the event loop. One unit of work per stream in turn.
import { createHash, type Hash } from 'node:crypto';
import { setPriority } from 'node:os';
import { parentPort, type MessagePort } from 'node:worker_threads';
import { isNarhubError } from '../../errors.js';
import { type Codec, DECODE_CHUNK, type Emit, type Host, OUTPUT_WINDOW } from '../codecs/codec.js';
import { decompress } from '../codecs/decompress.js';
import { nar } from '../codecs/nar.js';
import { sha256 } from '../codecs/sha256.js';
import { zstdCompress } from '../codecs/zstd.js';
import type { CodecSpec, FromThread, LinkMessage, ToThread } from './protocol.js';

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

function openCodec(spec: CodecSpec, host: Host): Codec {
  switch (spec.codec) {
    case 'decompress':
      return decompress(host, spec.compression);
    case 'zstd':
      return zstdCompress(host.emit, spec.level, spec.workers);
    case 'sha256':
      return sha256();
    case 'nar':
      return nar(host.emit, spec);
  }
}

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
