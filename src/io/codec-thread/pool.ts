// The codec threads (worker.ts) on the main thread's side: started on demand, shared by every
// codec stream, and each stream placed on the least busy one.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { FromThread } from './protocol.js';

/**
 * Threads shared by every stream; another starts only while more streams run at once. Two at
 * least (an upload's decoder runs beside its validator and file hash, a recompression's decoder
 * beside its validator and zstd), more on bigger machines, since a busy stream keeps its thread
 * busy: each runs at the speed of one core.
 */
const MAX_THREADS = Math.max(2, Math.min(4, availableParallelism()));

/** A codec stream as its thread's messages reach it. */
export interface ThreadClient {
  fromThread(msg: FromThread): void;
  destroy(err: Error): void;
}

export interface ThreadHandle {
  worker: Worker;
  streams: Map<number, ThreadClient>;
}

const threads: ThreadHandle[] = [];

/** An idle thread, else a new one, else the least busy; other than `besides` where possible. */
export function threadFor(besides?: ThreadHandle): ThreadHandle {
  const idle = threads.find((t) => t.streams.size === 0 && t !== besides);
  if (idle) return idle;
  if (threads.length < MAX_THREADS) {
    const worker = new Worker(new URL('./worker.js', import.meta.url));
    const handle: ThreadHandle = { worker, streams: new Map() };
    worker.on('message', (msg: FromThread) => handle.streams.get(msg.id)?.fromThread(msg));
    const lost = (err: Error) => {
      const i = threads.indexOf(handle);
      if (i >= 0) threads.splice(i, 1);
      const streams = [...handle.streams.values()];
      handle.streams.clear();
      for (const s of streams) s.destroy(err);
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`codec thread exited (code ${code})`)));
    worker.unref();
    threads.push(handle);
    return handle;
  }
  const others = threads.filter((t) => t !== besides);
  return (others.length > 0 ? others : threads).reduce((a, b) => (b.streams.size < a.streams.size ? b : a));
}
