import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { NarhubError } from '../errors.js';
import { parseStorePath } from '../nix/store-path.js';

/**
 * The on-disk push queue that `narhub queue-push` fills (from Nix's post-build-hook) and
 * `narhub push-daemon` drains. Like a maildir: each append is one file, written under a hidden
 * temporary name, fsynced, renamed to `<time>-<pid>-<random>.paths` and the directory fsynced,
 * so an entry is either whole and durable or absent, and concurrent hooks never share a file.
 * Names sort in the order they were queued. An entry is deleted only once its closure is in the
 * cache; one the cache refuses for good moves to `failed/`, with a `.why` file beside it.
 */
export const DEFAULT_QUEUE_DIR = '/var/lib/narhub-push/queue';

const ENTRY_SUFFIX = '.paths';
const TEMP_PREFIX = '.';
/** A temporary file this old was left by a writer that died. */
const STALE_TEMP_MS = 3_600_000;

/** `$NARHUB_PUSH_QUEUE`, else `/var/lib/narhub-push/queue`: the one place both commands agree on. */
export function defaultQueueDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.NARHUB_PUSH_QUEUE || DEFAULT_QUEUE_DIR;
}

export interface QueueEntry {
  /** The file name inside the queue directory. */
  name: string;
  /** Its store paths, each once, in the order queued. */
  paths: string[];
}

function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Creates `dir` (and parents) if missing, making each new directory durable in its parent. */
function ensureDirSync(dir: string): void {
  try {
    if (statSync(dir).isDirectory()) return;
  } catch {
    // missing: made below
  }
  ensureDirSync(dirname(dir));
  try {
    mkdirSync(dir, { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  fsyncDirSync(dirname(dir));
}

function entryName(): string {
  // 15 digits of milliseconds sort as numbers until the year 33658.
  return `${String(Date.now()).padStart(15, '0')}-${process.pid}-${randomBytes(4).toString('hex')}${ENTRY_SUFFIX}`;
}

/** Refuses anything that is not a store path, naming it. */
function checkStorePaths(paths: readonly string[]): void {
  for (const path of paths) parseStorePath(path);
}

/**
 * Appends `paths` to the queue as one durable entry and returns its name. Synchronous: it is the
 * post-build-hook's whole job, and watch-store's few milliseconds of fsync per scan can wait.
 */
export function appendToQueue(dir: string, paths: readonly string[]): string {
  checkStorePaths(paths);
  ensureQueueDir(dir);
  const name = entryName();
  const temp = join(dir, `${TEMP_PREFIX}${name}.tmp`);
  const fd = openSync(temp, 'wx', 0o644);
  try {
    try {
      // Readable by a daemon of another user (NixOS runs the hook as root, push-daemon as
      // narhub-push) whatever the writer's umask.
      fchmodSync(fd, 0o644);
      writeSync(fd, `${[...new Set(paths)].join('\n')}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, join(dir, name));
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  fsyncDirSync(dir);
  return name;
}

/** The names of the queued entries, oldest first. */
export async function listEntries(dir: string): Promise<string[]> {
  const names = await readdir(dir);
  return names.filter((n) => n.endsWith(ENTRY_SUFFIX) && !n.startsWith(TEMP_PREFIX)).sort();
}

/**
 * An entry's paths (blank lines and `#` comments skipped, duplicates dropped), or undefined when
 * it is gone. A line that is not a store path (an entry edited by hand) is reported, not fatal.
 */
export async function readEntry(dir: string, name: string): Promise<{ entry: QueueEntry; bad: string[] } | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, name), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const paths = new Set<string>();
  const bad: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      parseStorePath(line);
      paths.add(line);
    } catch {
      bad.push(line);
    }
  }
  return { entry: { name, paths: [...paths] }, bad };
}

/** Deletes entries whose closures are in the cache, then makes that durable with one fsync. */
export async function removeEntries(dir: string, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  for (const name of names) await rm(join(dir, name), { force: true });
  await fsyncDir(dir);
}

/** Moves an entry the cache refuses for good to `failed/`, with why beside it (`<name>.why`). */
export async function moveToFailed(dir: string, name: string, reasons: readonly string[]): Promise<string> {
  const failedDir = join(dir, 'failed');
  ensureDirSync(failedDir);
  const why = join(failedDir, `${name}.why`);
  await writeFile(why, `${reasons.join('\n')}\n`, { mode: 0o644 });
  await rename(join(dir, name), join(failedDir, name));
  await fsyncDir(failedDir);
  await fsyncDir(dir);
  return join(failedDir, name);
}

/** Removes temporary files that writers which died mid-append left behind. */
export async function removeStaleTemps(dir: string, now = Date.now()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir)) {
    if (!name.startsWith(TEMP_PREFIX) || !name.endsWith('.tmp')) continue;
    const file = join(dir, name);
    const info = await stat(file).catch(() => undefined);
    if (info && now - info.mtimeMs > STALE_TEMP_MS) {
      await rm(file, { force: true });
      removed++;
    }
  }
  return removed;
}

/** Creates the queue directory if needed (the daemon watches it before anything is queued). */
export function ensureQueueDir(dir: string): void {
  try {
    ensureDirSync(dir);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new NarhubError(
      'BAD_REQUEST',
      `cannot create the push queue ${dir} (${e.code ?? e.message}): ` +
        'give another with --queue DIR or $NARHUB_PUSH_QUEUE',
    );
  }
}
