import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, open, opendir, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
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
  abortableRead,
} from './blob-store.js';
import { createDirSyncer, syncDirs } from './dir-sync.js';
import { createFileThreadPool, FileJobFailure, type FileThreadPool } from './file-thread/pool.js';
import { fileRead } from './file-read-stream.js';
import { errnoOf, fsStep, isMissing, messageOf, storageError } from './fs-errors.js';
import { openTemp, TempFileSink } from './temp-file-sink.js';
import { ownerState, ownTempDirName } from './temp-owners.js';

/**
 * In-flight puts live here until renamed into place. It sits under the root so the rename stays
 * on one filesystem (atomic), and `~` is outside the key alphabet, so no key can ever name it.
 */
const TEMP_DIR = '.tmp~';

/**
 * Loose files in TEMP_DIR come from narhub versions before per-process temp directories
 * (temp-owners.ts), which a start cannot tie to a process: they are swept once nobody has written
 * to them for this long (a live put refreshes its file's mtime with every write).
 */
const STALE_LOOSE_TEMP_MS = 60 * 60 * 1000;

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

/** What every operation of a local store needs. */
interface LocalStore {
  root: string;
  tempDir: string;
  durable: boolean;
  dirSync: (dir: string) => Promise<void>;
  files: FileThreadPool;
}

/**
 * A BlobStore on a local directory: key `a/b/c` is the file `<root>/a/b/c`, so the root is a
 * plain Nix binary cache that other tools can serve or copy.
 */
export function createLocalBlobStore(options: LocalBlobStoreOptions): BlobStore {
  const root = resolve(options.root);
  const tempRoot = join(root, TEMP_DIR);
  // The puts of this store write here; a start removes what processes no longer running left.
  const tempDir = join(tempRoot, ownTempDirName());
  try {
    mkdirSync(tempDir, { recursive: true });
  } catch (err) {
    throw new NarhubError('CONFIG_INVALID', `cannot use storage root ${root}: ${messageOf(err)}`, { cause: err });
  }
  removeOrphanedTemps(tempRoot, Date.now() - STALE_LOOSE_TEMP_MS);
  const store: LocalStore = {
    root,
    tempDir,
    durable: options.fsync ?? true,
    dirSync: createDirSyncer(),
    files: createFileThreadPool(options.fileThreads),
  };

  return {
    kind: 'local',
    async put(key, body, opts = {}) {
      const target = pathOf(root, key);
      opts.signal?.throwIfAborted();
      return body instanceof Uint8Array
        ? putBytes(store, key, target, body, opts)
        : putStream(store, key, target, body, opts);
    },
    // Without fsync nothing is ever waited for, so there is nothing to sync.
    ...(store.durable
      ? {
          async sync(keys: string[]) {
            const paths = keys.map((key) => pathOf(root, key));
            if (paths.length > 0) await onThread(keys.join(', '), store.files.sync(paths));
          },
        }
      : {}),
    get: async (key, opts = {}) => get(store, key, pathOf(root, key), opts),
    stat: async (key) => statFile(key, pathOf(root, key)),
    delete: async (key) => deleteFile(key, pathOf(root, key)),
    async *list(prefix) {
      // Only the directory part of the prefix is walked; the rest filters names.
      const slash = prefix.lastIndexOf('/');
      const dirKey = slash === -1 ? '' : prefix.slice(0, slash);
      // No valid key can start with a prefix whose directory part is not a valid key itself.
      if (dirKey !== '' && !isValidKey(dirKey)) return;
      yield* walk(dirKey === '' ? root : pathOf(root, dirKey), dirKey, prefix);
    },
    // Read streams own and close their handles; the file threads finish what they were given.
    async close() {
      await store.files.close();
      // Empty once every put has ended; a put still running keeps it (a later start removes it).
      await rmdir(tempDir).catch(() => undefined);
    },
  };
}

/** Validates `key` and maps it to its file, refusing anything that would land outside root. */
function pathOf(root: string, key: string): string {
  assertValidKey(key);
  const full = resolve(root, ...key.split('/'));
  const rel = relative(root, full);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new NarhubError('BAD_REQUEST', `storage key ${JSON.stringify(key)} escapes the storage root`);
  }
  return full;
}

const tempName = (store: LocalStore): string => join(store.tempDir, randomBytes(12).toString('hex'));

/** A put of bytes in hand: the whole write, rename and fsyncs in one trip to a file thread. */
async function putBytes(
  store: LocalStore,
  key: string,
  target: string,
  body: Uint8Array,
  opts: BlobPutOptions,
): Promise<BlobInfo> {
  if (opts.size !== undefined && opts.size !== body.byteLength) {
    throw new NarhubError('BAD_REQUEST', `blob body for ${key} was ${body.byteLength} bytes, expected ${opts.size}`);
  }
  if (opts.beforeCommit) {
    await opts.beforeCommit();
    opts.signal?.throwIfAborted();
  }
  // Handed to the thread in the same tick as the put, unless a beforeCommit ran first.
  const { tempDir } = store;
  const durable = store.durable && opts.durable !== false;
  await onThread(key, store.files.write({ tempDir, temp: tempName(store), target, data: body, durable }));
  return { size: body.byteLength };
}

/** A streamed put: written to a temporary file with writev, checked, fsynced and renamed. */
async function putStream(
  store: LocalStore,
  key: string,
  target: string,
  body: Exclude<Body, Uint8Array>,
  opts: BlobPutOptions,
): Promise<BlobInfo> {
  const { signal } = opts;
  const temp = tempName(store);
  // Cleanup awaits it, so a temp file still being opened when the put fails cannot outlive
  // the cleanup.
  let opening: Promise<FileHandle> | undefined;
  let renamed = false;
  try {
    opening = openTemp(store.tempDir, temp);
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
    if (store.durable) await fsStep('fsync', key, () => fh.sync());
    await fsStep('close', key, () => fh.close());
    // Last chance to honour an abort: after the rename the new content is public.
    signal?.throwIfAborted();
    await renameIntoPlace(store, key, temp, target);
    renamed = true;
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

/** Renames a finished temp file to its key, making directories as needed, durably if asked. */
async function renameIntoPlace(store: LocalStore, key: string, temp: string, target: string): Promise<void> {
  const dir = dirname(target);
  let firstCreated: string | undefined;
  await fsStep('rename', key, () =>
    rename(temp, target).catch(async (err: unknown) => {
      if (!isMissing(err)) throw err;
      // A directory no put has needed yet (or one removed since).
      firstCreated = await mkdir(dir, { recursive: true });
      await rename(temp, target);
    }),
  );
  // The rename is durable once its directory is, and so is every directory mkdir just made.
  if (!store.durable) return;
  await fsStep('fsync directory', key, async () => {
    if (firstCreated !== undefined) await syncDirs(dirname(firstCreated), dirname(dir));
    await store.dirSync(dir);
  });
}

async function get(store: LocalStore, key: string, path: string, opts: BlobGetOptions): Promise<BlobRead | null> {
  opts.signal?.throwIfAborted();
  const whole = await onThread(key, store.files.read(path, WHOLE_READ_MAX));
  if (whole.found === 'missing' || whole.found === 'not-file') return null;
  if (whole.found === 'bytes') return abortableRead(bytesRead(key, whole.bytes, opts.range), opts.signal);
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
    const st = await fsStep('stat', key, () => fh.stat());
    if (!st.isFile()) {
      await fh.close();
      return null;
    }
    const totalSize = st.size;
    const { start, end } = rangeOf(key, opts.range, totalSize);
    return abortableRead(fileRead(fh, start, end, totalSize), opts.signal);
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
}

async function statFile(key: string, path: string): Promise<BlobInfo | null> {
  try {
    const st = await stat(path);
    return st.isFile() ? { size: st.size } : null;
  } catch (err) {
    if (isMissing(err)) return null;
    throw storageError('stat', key, err);
  }
}

async function deleteFile(key: string, path: string): Promise<void> {
  try {
    // Parent directories stay: a concurrent put may be about to rename into them.
    await unlink(path);
  } catch (err) {
    // A directory is not a blob, so as a key it is absent.
    if (isMissing(err) || errnoOf(err) === 'EISDIR') return;
    throw storageError('delete', key, err);
  }
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

/**
 * Removes the temp directories of stores whose process has ended, however recent (a crash, a
 * kill), and loose files (older narhubs) untouched since `looseBeforeMs`.
 */
function removeOrphanedTemps(tempRoot: string, looseBeforeMs: number): void {
  for (const name of readdirSync(tempRoot)) {
    const path = join(tempRoot, name);
    try {
      const owner = ownerState(name);
      if (owner === 'dead' || (owner === undefined && lstatSync(path).mtimeMs < looseBeforeMs)) {
        rmSync(path, { recursive: true, force: true });
      }
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
