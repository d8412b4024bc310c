import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, open, opendir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { addAbortSignal, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NarhubError } from '../errors.js';
import {
  assertValidKey,
  isValidKey,
  type BlobGetOptions,
  type BlobInfo,
  type BlobPutOptions,
  type BlobRead,
  type BlobStore,
} from './blob-store.js';
import { createFileThreadPool, FileJobFailure } from './file-thread/pool.js';
import { errnoOf, isMissing } from './fs-errors.js';
import { writevAll } from './writev-all.js';

/**
 * In-flight puts live here until renamed into place. It sits under the root so the rename stays
 * on one filesystem (atomic), and `~` is outside the key alphabet, so no key can ever name it.
 */
const TEMP_DIR = '.tmp~';

/**
 * The server and admin CLI may open the same root at once, so start-up only sweeps temp files
 * nobody has written to for this long: a live put refreshes its file's mtime with every write.
 */
const STALE_TEMP_MS = 60 * 60 * 1000;

/**
 * Read streams pull 1 MiB per read(2) instead of Node's 64 KiB default: a multi-GB NAR then
 * costs a sixteenth of the syscalls and stream callbacks on its way to the socket (and the
 * buffers are reused when the reader recycles them, see FileReadStream).
 */
const READ_CHUNK = 1024 * 1024;

/**
 * Files up to this size are read whole by a file thread, in one trip, and handed out as bytes
 * (narinfos, listings, logs, `.drv`s and most NARs a build hub moves); larger ones stream.
 */
const WHOLE_READ_MAX = 256 * 1024;

type Body = Readable | AsyncIterable<Uint8Array> | Uint8Array;

export interface LocalBlobStoreOptions {
  root: string;
  /** fsync files and directories before a put resolves (default true). */
  fsync?: boolean;
  /** Threads for whole small-file writes and reads (default 2). */
  fileThreads?: number;
}

/**
 * A BlobStore on a local directory: key `a/b/c` is the file `<root>/a/b/c`, so the root is a
 * plain Nix binary cache that other tools can serve or copy.
 */
export function createLocalBlobStore(options: LocalBlobStoreOptions): BlobStore {
  const root = resolve(options.root);
  const durable = options.fsync ?? true;
  const tempDir = join(root, TEMP_DIR);

  try {
    mkdirSync(tempDir, { recursive: true });
  } catch (err) {
    throw new NarhubError('CONFIG_INVALID', `cannot use storage root ${root}: ${messageOf(err)}`, { cause: err });
  }
  removeStaleTemps(tempDir, Date.now() - STALE_TEMP_MS);

  /** Validates `key` and maps it to its file, refusing anything that would land outside root. */
  function pathOf(key: string): string {
    assertValidKey(key);
    const full = resolve(root, ...key.split('/'));
    const rel = relative(root, full);
    if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
      throw new NarhubError('BAD_REQUEST', `storage key ${JSON.stringify(key)} escapes the storage root`);
    }
    return full;
  }

  const dirSync = createDirSyncer();
  const files = createFileThreadPool(options.fileThreads);

  /** A put of bytes in hand: the whole write, rename and fsyncs in one trip to a file thread. */
  async function putBytes(key: string, target: string, body: Uint8Array, opts: BlobPutOptions): Promise<BlobInfo> {
    if (opts.size !== undefined && opts.size !== body.byteLength) {
      throw new NarhubError('BAD_REQUEST', `blob body for ${key} was ${body.byteLength} bytes, expected ${opts.size}`);
    }
    if (opts.beforeCommit) {
      await opts.beforeCommit();
      opts.signal?.throwIfAborted();
    }
    // Handed to the thread in the same tick as the put, unless a beforeCommit ran first.
    const temp = join(tempDir, randomBytes(12).toString('hex'));
    await onThread(key, files.write({ tempDir, temp, target, data: body, durable }));
    return { size: body.byteLength };
  }

  async function put(key: string, body: Body, opts: BlobPutOptions = {}): Promise<BlobInfo> {
    const target = pathOf(key);
    const { signal } = opts;
    signal?.throwIfAborted();
    if (body instanceof Uint8Array) return putBytes(key, target, body, opts);

    const temp = join(tempDir, randomBytes(12).toString('hex'));
    // Cleanup awaits it, so a temp file still being opened when the put fails cannot outlive
    // the cleanup.
    let opening: Promise<FileHandle> | undefined;
    let renamed = false;
    try {
      opening = openTemp(tempDir, temp);
      const sink = new TempFileSink(key, opening);
      // pipeline() is called before any await, so a Readable that errors early has a listener.
      await pipeline(body, sink, signal === undefined ? {} : { signal });
      const size = sink.size;
      if (opts.size !== undefined && opts.size !== size) {
        throw new NarhubError('BAD_REQUEST', `blob body for ${key} was ${size} bytes, expected ${opts.size}`);
      }
      // The caller's last word (hash checks); its error is the put's error, unchanged.
      await opts.beforeCommit?.();
      const fh = await opening!;
      if (durable) await io('fsync', key, () => fh.sync());
      await io('close', key, () => fh.close());
      // Last chance to honour an abort: after the rename the new content is public.
      signal?.throwIfAborted();

      const dir = dirname(target);
      let firstCreated: string | undefined;
      await io('rename', key, () =>
        rename(temp, target).catch(async (err: unknown) => {
          if (!isMissing(err)) throw err;
          // A directory no put has needed yet (or one removed since).
          firstCreated = await mkdir(dir, { recursive: true });
          await rename(temp, target);
        }),
      );
      renamed = true;
      // The rename is durable once its directory is, and so is every directory mkdir just made.
      if (durable) {
        await io('fsync directory', key, async () => {
          if (firstCreated !== undefined) await syncDirs(dirname(firstCreated), dirname(dir));
          await dirSync(dir);
        });
      }
      return { size };
    } catch (err) {
      if (!renamed) {
        // close() waits for a pending write and is a no-op on a closed handle.
        const fh = await opening?.catch(() => undefined);
        await fh?.close().catch(() => undefined);
        await unlink(temp).catch(() => undefined);
      }
      throw err;
    }
  }

  async function get(key: string, opts: BlobGetOptions = {}): Promise<BlobRead | null> {
    const path = pathOf(key);
    opts.signal?.throwIfAborted();
    const whole = await onThread(key, files.read(path, WHOLE_READ_MAX));
    if (whole.found === 'missing' || whole.found === 'not-file') return null;
    if (whole.found === 'bytes') return withSignal(bytesRead(key, whole.bytes, opts.range), opts.signal);
    // Too large to read whole: streamed from a handle of its own.
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      if (isMissing(err)) return null;
      throw storageError('open', key, err);
    }
    try {
      // Sizes come from the open handle: a concurrent put renames a new inode in, ours stays whole.
      const st = await io('stat', key, () => fh.stat());
      if (!st.isFile()) {
        await fh.close();
        return null;
      }
      const totalSize = st.size;
      const { start, end } = rangeOf(key, opts.range, totalSize);
      return withSignal(fileRead(fh, start, end, totalSize), opts.signal);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  async function statKey(key: string): Promise<BlobInfo | null> {
    const path = pathOf(key);
    try {
      const st = await stat(path);
      return st.isFile() ? { size: st.size } : null;
    } catch (err) {
      if (isMissing(err)) return null;
      throw storageError('stat', key, err);
    }
  }

  async function deleteKey(key: string): Promise<void> {
    const path = pathOf(key);
    try {
      // Parent directories stay: a concurrent put may be about to rename into them.
      await unlink(path);
    } catch (err) {
      // A directory is not a blob, so as a key it is absent.
      if (isMissing(err) || errnoOf(err) === 'EISDIR') return;
      throw storageError('delete', key, err);
    }
  }

  async function* list(prefix: string): AsyncGenerator<string> {
    // Only the directory part of the prefix is walked; the rest filters names.
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash === -1 ? '' : prefix.slice(0, slash);
    // No valid key can start with a prefix whose directory part is not a valid key itself.
    if (dirKey !== '' && !isValidKey(dirKey)) return;
    yield* walk(dirKey === '' ? root : pathOf(dirKey), dirKey, prefix);
  }

  async function* walk(dir: string, dirKey: string, prefix: string): AsyncGenerator<string> {
    let entries;
    try {
      entries = await opendir(dir);
    } catch (err) {
      if (isMissing(err)) return;
      throw storageError('list', dirKey, err);
    }
    for await (const entry of entries) {
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      // Skips the temp dir and anything else no key could name (stray files, symlinks).
      if (!isValidKey(key)) continue;
      if (entry.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* walk(join(dir, entry.name), key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        yield key;
      }
    }
  }

  return {
    kind: 'local',
    put,
    get,
    stat: statKey,
    delete: deleteKey,
    list,
    // Read streams own and close their handles; the file threads finish what they were given.
    close: () => files.close(),
  };
}

async function openTemp(tempDir: string, temp: string): Promise<FileHandle> {
  try {
    return await open(temp, 'wx');
  } catch (err) {
    if (!isMissing(err)) throw err;
    // Recreated on demand in case someone cleared the temp dir while the store was running.
    await mkdir(tempDir, { recursive: true });
    return open(temp, 'wx');
  }
}

/** Writes queued while one is in flight are joined into one writev of up to about this much. */
const SINK_HIGH_WATER_MARK = 1024 * 1024;

/**
 * The file side of a streamed put. Each write takes every chunk that queued while the one
 * before it ran, in one writev(2): a NAR arriving in 64 KiB socket reads is written in pieces
 * of up to a megabyte, with no copy to join them, and a sixteenth of the syscalls and thread
 * pool trips. A write finishing is the backpressure.
 */
class TempFileSink extends Writable {
  size = 0;
  private fh: FileHandle | undefined;

  constructor(
    private readonly key: string,
    private readonly opening: Promise<FileHandle>,
  ) {
    super({ highWaterMark: SINK_HIGH_WATER_MARK });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    io('create temp file', this.key, () => this.opening).then((fh) => {
      this.fh = fh;
      callback();
    }, callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writeChunks([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.writeChunks(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  private writeChunks(buffers: Buffer[], callback: (error?: Error | null) => void): void {
    io('write', this.key, () => writevAll(this.fh!, buffers)).then((written) => {
      this.size += written;
      callback();
    }, callback);
  }
}

/**
 * fsync of directories, shared by the puts that wait for one: a put needs an fsync of its
 * directory that starts after its rename, so while one runs, every put arriving meanwhile waits
 * for the next, single one. Many small puts into one directory then cost a few fsyncs, not one
 * each. (An fsync of a directory is about its entries, whichever descriptor it goes through.)
 */
function createDirSyncer(): (dir: string) => Promise<void> {
  const state = new Map<string, { running: Promise<void>; next?: Promise<void> }>();
  const start = (dir: string): Promise<void> => {
    const running = syncDirs(dir, dir).finally(() => {
      const s = state.get(dir);
      if (s?.running !== running) return;
      if (s.next === undefined) state.delete(dir);
    });
    return running;
  };
  return (dir) => {
    const s = state.get(dir);
    if (s === undefined) {
      const running = start(dir);
      state.set(dir, { running });
      return running;
    }
    if (s.next !== undefined) return s.next;
    // Runs (even if the current one failed) once the current one has ended; it becomes current.
    const next = s.running
      .catch(() => undefined)
      .then(() => {
        const current = state.get(dir)!;
        current.next = undefined;
        current.running = start(dir);
        return current.running;
      });
    s.next = next;
    return next;
  };
}

/** fsyncs `to` and each of its ancestors up to and including `from`. */
async function syncDirs(from: string, to: string): Promise<void> {
  for (let dir = to; ; dir = dirname(dir)) {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (dir === from || dir === dirname(dir)) return;
  }
}

/** A read of bytes `start` (inclusive) to `end` (exclusive) of an open file, which it owns. */
function fileRead(fh: FileHandle, start: number, end: number, totalSize: number): BlobRead {
  const stream = new FileReadStream(fh, start, end);
  return { stream, size: end - start, totalSize, recycle: (chunk) => stream.recycle(chunk) };
}

/** The byte range to read, `end` exclusive: the whole blob without `range`. */
function rangeOf(key: string, range: BlobGetOptions['range'], totalSize: number): { start: number; end: number } {
  if (range === undefined) return { start: 0, end: totalSize };
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end >= totalSize) {
    throw new NarhubError('RANGE_NOT_SATISFIABLE', `range ${start}-${end} is outside ${key} (${totalSize} bytes)`);
  }
  return { start, end: end + 1 };
}

/** A read of a whole file's bytes, or of `range` of them. */
function bytesRead(key: string, bytes: Uint8Array, range: BlobGetOptions['range']): BlobRead {
  const totalSize = bytes.byteLength;
  const { start, end } = rangeOf(key, range, totalSize);
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start);
  return { stream: Readable.from([buffer], { objectMode: false }), size: buffer.length, totalSize, bytes: buffer };
}

/** Buffers a FileReadStream keeps for reuse. */
const SPARE_CHUNKS = 4;

/**
 * Reads a file range in READ_CHUNK pieces, like `fh.createReadStream`, but reads into buffers
 * handed back through `recycle` when it has some, so a caller that recycles (the HTTP layer,
 * once the socket has written a chunk) streams gigabytes without producing garbage. Closes the
 * file when it ends or is destroyed. A file that turns out shorter than the range is an error,
 * never a silently short body.
 */
class FileReadStream extends Readable {
  private position: number;
  private readonly spare: Buffer[] = [];
  /** Backing buffers of the chunks pushed and not recycled yet: only these may come back. */
  private readonly lent = new Set<ArrayBufferLike>();

  constructor(
    private readonly fh: FileHandle,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_CHUNK });
    this.position = start;
  }

  recycle(chunk: Uint8Array): void {
    if (!this.lent.delete(chunk.buffer)) return;
    if (this.spare.length < SPARE_CHUNKS && !this.destroyed) this.spare.push(Buffer.from(chunk.buffer, 0, READ_CHUNK));
  }

  override _read(): void {
    const want = Math.min(READ_CHUNK, this.end - this.position);
    if (want <= 0) {
      this.push(null);
      return;
    }
    // A small file (or tail) gets a buffer of its size: a fresh 1 MiB one per small read would
    // be external memory that V8 answers with garbage collections. Only full-size ones are lent.
    const spare = this.spare.pop();
    const buffer = spare ?? (want < READ_CHUNK ? Buffer.allocUnsafe(want) : Buffer.allocUnsafeSlow(READ_CHUNK));
    const lend = buffer.length === READ_CHUNK;
    this.fh.read(buffer, 0, want, this.position).then(
      ({ bytesRead }) => {
        if (this.destroyed) return;
        if (bytesRead === 0) {
          this.destroy(new Error(`file ended at byte ${this.position}, before the ${this.end} bytes expected`));
          return;
        }
        this.position += bytesRead;
        if (lend) this.lent.add(buffer.buffer);
        this.push(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.spare.length = 0;
    this.fh.close().then(
      () => callback(error),
      (closeError: unknown) => callback(error ?? (closeError as Error)),
    );
  }
}

function withSignal(read: BlobRead, signal: AbortSignal | undefined): BlobRead {
  if (signal !== undefined) addAbortSignal(signal, read.stream);
  return read;
}

function removeStaleTemps(tempDir: string, olderThanMs: number): void {
  for (const name of readdirSync(tempDir)) {
    const path = join(tempDir, name);
    try {
      if (lstatSync(path).mtimeMs < olderThanMs) rmSync(path, { recursive: true, force: true });
    } catch {
      // Another process swept it first, or it is not ours to remove; neither blocks start-up.
    }
  }
}

/** A file thread's job, its failure reported as STORAGE_ERROR naming the step that failed. */
async function onThread<T>(key: string, job: Promise<T>): Promise<T> {
  try {
    return await job;
  } catch (err) {
    throw err instanceof FileJobFailure ? storageError(err.step, key, err) : err;
  }
}

/** Runs one filesystem step of ours, reporting its failure as STORAGE_ERROR. */
async function io<T>(what: string, key: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw storageError(what, key, err);
  }
}

function storageError(what: string, key: string, err: unknown): NarhubError {
  if (err instanceof NarhubError) return err;
  return new NarhubError(
    'STORAGE_ERROR',
    `local storage ${what} failed for ${JSON.stringify(key)}: ${messageOf(err)}`,
    {
      cause: err,
      details: { key, code: errnoOf(err) },
    },
  );
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
