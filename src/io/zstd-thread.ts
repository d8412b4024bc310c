// Worker-thread side of io/zstd-off-thread.ts: runs zstd (and the SHA-256 of its output) for
// many streams, so zstd's blocking waits (its multi-threaded mode waits whenever input outruns
// its threads) and the hashing happen here, never on the event loop.
import { createHash, type Hash } from 'node:crypto';
import { createRequire } from 'node:module';
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';

interface CCtx {
  setParameter(param: number, value: number): void;
  compressStream2(output: Uint8Array, input: Uint8Array, endOp: number): [number, number, number];
}
interface Binding {
  CCtx: new () => CCtx;
  CParameter: { compressionLevel: number; nbWorkers: number; jobSize: number };
  EndDirective: { continue: number; end: number };
  cStreamOutSize(): number;
}

/** Main thread → zstd thread. Input buffers travel back with their ack, to be filled again. */
export type ToThread =
  | { type: 'open'; id: number; level: number; workers: number }
  | { type: 'data'; id: number; buffer: ArrayBuffer; length: number }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number };

/** zstd thread → main thread. `end` carries the SHA-256 and length of everything produced. */
export type FromThread =
  | { type: 'data'; id: number; chunk: Uint8Array }
  | { type: 'ack'; id: number; buffer: ArrayBuffer }
  | { type: 'end'; id: number; sha256: Uint8Array; bytes: number }
  | { type: 'error'; id: number; message: string };

interface Stream {
  cctx: CCtx;
  hash: Hash;
  bytes: number;
}

/**
 * This thread, and the zstd threads it starts (Linux threads inherit their creator's nice
 * value), run at a lower priority than the event loop: when the CPU is short, compression waits,
 * not the requests. Lowering one's own priority needs no privilege; where it fails, it is skipped.
 */
const NICE = 5;
try {
  setPriority(0, NICE);
} catch {
  // Not supported here: compression simply competes on equal terms.
}

/**
 * Size of a job in zstd's multi-threaded mode. zstd's default (4 windows: 8 MiB at level 3)
 * holds several jobs' input and output per worker: about 120 MB more resident memory on
 * incompressible input, per stream. 2 MiB jobs cost about 20 MB, the same CPU time, and files
 * about 0.5% larger (measured on 300 MB of /usr/lib at level 3, 2 workers).
 */
const JOB_SIZE = 2 * 1024 * 1024;

const binding = createRequire(import.meta.url)('zstd-napi/binding') as Binding;
const port = parentPort!;
const streams = new Map<number, Stream>();
// One output buffer, reused: in multi-threaded mode most calls produce nothing, and what they
// do produce leaves as an exact-size copy.
const out = new Uint8Array(binding.cStreamOutSize());

function run(id: number, stream: Stream, input: Uint8Array, endOp: number): void {
  let rest = input;
  for (;;) {
    const [remaining, produced, consumed] = stream.cctx.compressStream2(out, rest, endOp);
    if (produced > 0) {
      const chunk = out.slice(0, produced);
      stream.hash.update(chunk);
      stream.bytes += produced;
      port.postMessage({ type: 'data', id, chunk } satisfies FromThread, [chunk.buffer]);
    }
    rest = rest.subarray(consumed);
    if (rest.length === 0 && (endOp === binding.EndDirective.continue || remaining === 0)) return;
  }
}

port.on('message', (msg: ToThread) => {
  try {
    switch (msg.type) {
      case 'open': {
        const cctx = new binding.CCtx();
        cctx.setParameter(binding.CParameter.compressionLevel, msg.level);
        if (msg.workers > 0) {
          cctx.setParameter(binding.CParameter.nbWorkers, msg.workers);
          cctx.setParameter(binding.CParameter.jobSize, JOB_SIZE);
        }
        streams.set(msg.id, { cctx, hash: createHash('sha256'), bytes: 0 });
        return;
      }
      case 'data': {
        const stream = streams.get(msg.id);
        if (stream) run(msg.id, stream, new Uint8Array(msg.buffer, 0, msg.length), binding.EndDirective.continue);
        port.postMessage({ type: 'ack', id: msg.id, buffer: msg.buffer } satisfies FromThread, [msg.buffer]);
        return;
      }
      case 'end': {
        const stream = streams.get(msg.id);
        if (!stream) return;
        run(msg.id, stream, new Uint8Array(0), binding.EndDirective.end);
        streams.delete(msg.id);
        port.postMessage({ type: 'end', id: msg.id, sha256: new Uint8Array(stream.hash.digest()), bytes: stream.bytes } satisfies FromThread);
        return;
      }
      case 'abort':
        streams.delete(msg.id);
        return;
    }
  } catch (err) {
    streams.delete(msg.id);
    port.postMessage({ type: 'error', id: msg.id, message: err instanceof Error ? err.message : String(err) } satisfies FromThread);
  }
});
