import { Worker } from 'node:worker_threads';
import type { FileJob, FileJobError, FileJobResult, WholeRead } from './protocol.js';

type WriteJob = Omit<Extract<FileJob, { type: 'write' }>, 'id' | 'type'>;
type ReadJob = Omit<Extract<FileJob, { type: 'read' }>, 'id'>;
type SyncJob = Omit<Extract<FileJob, { type: 'sync' }>, 'id'>;
type Answer = Exclude<FileJobResult, { error: FileJobError }>;

/** A job's failure on its thread: `step` names it, `code` is the errno code if any. */
export class FileJobFailure extends Error {
  readonly step: string;
  readonly code: string | undefined;
  constructor(error: FileJobError) {
    super(error.message);
    this.name = 'FileJobFailure';
    this.step = error.step;
    this.code = error.code;
  }
}

export interface FileThreadPool {
  /** Resolves once the file is in place (and durable, if asked). */
  write(job: WriteJob): Promise<void>;
  /** Resolves once files written without fsync, and their names, are durable. */
  sync(paths: string[]): Promise<void>;
  /** The file's bytes if it is a regular file of at most `maxSize` bytes. */
  read(path: string, maxSize: number): Promise<WholeRead>;
  close(): Promise<void>;
}

interface Thread {
  worker: Worker;
  pending: Map<number, { resolve: (r: Answer) => void; reject: (e: Error) => void }>;
}

/**
 * Small files written and read on `count` file threads (`worker.ts`). On the event loop
 * a put through fs/promises is six or more trips to libuv's pool (open, write, fsync, close,
 * rename, the directory's open/fsync/close), each a wake-up that on a VM costs tens of
 * microseconds of the loop's time; here a file is one message each way, and puts that wait
 * together share their directory fsyncs. Threads start on first use and do not keep the
 * process alive.
 */
export function createFileThreadPool(count = 2): FileThreadPool {
  const threads: Thread[] = [];
  let nextId = 1;
  let next = 0;
  let closed = false;
  const inFlight = new Set<Promise<unknown>>();

  function spawn(): Thread {
    const worker = new Worker(new URL('./worker.js', import.meta.url));
    const thread: Thread = { worker, pending: new Map() };
    worker.on('message', (results: FileJobResult[]) => {
      for (const r of results) {
        const waiter = thread.pending.get(r.id);
        if (!waiter) continue;
        thread.pending.delete(r.id);
        if ('error' in r) waiter.reject(new FileJobFailure(r.error));
        else waiter.resolve(r);
      }
      if (thread.pending.size === 0) worker.unref();
    });
    const lost = (err: Error) => {
      const i = threads.indexOf(thread);
      if (i >= 0) threads.splice(i, 1);
      for (const w of thread.pending.values()) w.reject(err);
      thread.pending.clear();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`file thread exited (code ${code})`)));
    worker.unref();
    return thread;
  }

  function run(job: (WriteJob & { type: 'write' }) | ReadJob | SyncJob): Promise<Answer> {
    if (closed) return Promise.reject(new Error('file threads are closed'));
    // Round robin: each thread batches what queues up for it while it works.
    if (threads.length < count) threads.push(spawn());
    const thread = threads[next++ % threads.length]!;
    const id = nextId++;
    const done = new Promise<Answer>((resolve, reject) => {
      thread.pending.set(id, { resolve, reject });
      // Busy threads keep the process alive until they have answered.
      thread.worker.ref();
      if (job.type === 'write') {
        // Its own exactly-sized copy moves to the thread (a view's whole buffer would be cloned).
        const data = new Uint8Array(job.data);
        thread.worker.postMessage({ ...job, id, data }, [data.buffer]);
      } else {
        thread.worker.postMessage({ ...job, id });
      }
    });
    const settled: Promise<unknown> = done.then(
      () => inFlight.delete(settled),
      () => inFlight.delete(settled),
    );
    inFlight.add(settled);
    return done;
  }

  return {
    async write(job) {
      await run({ type: 'write', ...job });
    },
    async sync(paths) {
      await run({ type: 'sync', paths });
    },
    async read(path, maxSize) {
      const answer = await run({ type: 'read', path, maxSize });
      if (!('found' in answer)) throw new Error('file thread answered a read with a write result');
      return answer;
    },
    async close() {
      closed = true;
      // Jobs still running finish first: a put cut short would leave its caller waiting.
      await Promise.all([...inFlight]);
      await Promise.all(threads.splice(0).map((t) => t.worker.terminate()));
    },
  };
}
