// zstd on a codec thread, through zstd-napi's binding: compression (driving zstd's own worker
// threads) and decompression in bounded steps.
import { createRequire } from 'node:module';
import { type Codec, DECODE_CHUNK, type Emit } from './codec.js';

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

const require = createRequire(import.meta.url);
let zstdBinding: ZstdBinding | undefined;
const zstd = (): ZstdBinding => (zstdBinding ??= require('zstd-napi/binding') as ZstdBinding);
// One output buffer, reused: in multi-threaded mode most compression calls produce nothing, and
// what they do produce leaves as an exact-size copy.
let zstdOut: Uint8Array | undefined;

/** Compresses each slab as it comes (output is never much larger than input); flushes at the end. */
export function zstdCompress(emit: Emit, level: number, workers: number): Codec {
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
export function zstdDecompress(emit: Emit, spare: () => ArrayBuffer | undefined): Codec {
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

/**
 * Decodes a whole zstd stream held in memory, on the calling thread, or returns undefined as
 * soon as it would decode to more than `max` bytes (the caller then streams it). Same rules as
 * `zstdDecompress`: several and skippable frames, an error for input that ends inside a frame.
 */
export function zstdDecompressSmall(input: Uint8Array, max: number): Buffer | undefined {
  const dctx = new (zstd().DCtx)();
  const chunks: Uint8Array[] = [];
  let total = 0;
  let rest = input;
  for (;;) {
    const out = new Uint8Array(Math.min(DECODE_CHUNK, max - total + 1));
    const [hint, produced, used] = dctx.decompressStream(out, rest);
    rest = rest.subarray(used);
    total += produced;
    if (total > max) return undefined;
    if (produced > 0) chunks.push(out.subarray(0, produced));
    // A full output buffer may leave more to flush even once the input is used up, unless the
    // frame is done (hint 0; asked again, a finished decoder waits for another frame).
    if (rest.length === 0 && (produced < out.length || hint === 0)) {
      if (hint !== 0) throw new Error('Stream ended in middle of compressed data frame');
      return Buffer.concat(chunks, total);
    }
    if (used === 0 && produced === 0) throw new Error('zstd made no progress');
  }
}
