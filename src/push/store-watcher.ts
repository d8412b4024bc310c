import { type FSWatcher, watch } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { appendToQueue } from './push-queue.js';
import { readNewPaths } from './nix-store-db.js';

/**
 * watch-store's producer: notices the paths Nix registers and appends them to a push queue, which
 * the queue drainer pushes. What it has seen is an id in Nix's database (`nix-store-db.ts`), kept
 * in `<stateDir>/cursor` and moved forward only once the paths up to it are queued durably, so
 * paths registered while narhub was stopped are found when it starts again, and a crash between
 * the two writes queues a few paths twice (which costs a missing-paths question), never none.
 * It looks when Nix's database directory changes (inotify, debounced) and every `intervalMs`
 * anyway, since a watch can miss events or break when the directory is replaced.
 */
export interface StoreWatcherOptions {
  /** Nix's database file (`nixDatabasePath()`). */
  database: string;
  /** Where the cursor is kept. */
  stateDir: string;
  /** The push queue to append to. */
  queueDir: string;
  /** Heard after paths were queued. */
  onQueued: (paths: string[]) => void;
  log: (line: string) => void;
  /** A look at the database at least this often (default 10 s). */
  intervalMs?: number;
}

export interface StoreWatcher {
  /** The id up to which paths are queued. */
  cursor(): number;
  /** Looks at the database now (what the timers do); resolves once done. */
  scan(): Promise<void>;
  close(): void;
}

/** Paths per queue entry: keeps `nix path-info` command lines far below the kernel's limit. */
const PATHS_PER_ENTRY = 1000;
/** Events come in bursts (a transaction writes the WAL several times). */
const DEBOUNCE_MS = 200;

interface Cursor {
  lastId: number;
}

async function readCursor(file: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const value = (JSON.parse(text) as Partial<Cursor>).lastId;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
    throw new Error(`${file} holds no cursor: ${text.slice(0, 100)}`);
  return value;
}

async function writeCursor(file: string, lastId: number): Promise<void> {
  const temp = `${file}.tmp`;
  await writeFile(temp, `${JSON.stringify({ lastId } satisfies Cursor)}\n`, { flush: true });
  await rename(temp, file);
}

/**
 * Starts watching. The first start (no cursor yet) begins at the newest path: what is already in
 * the store is not new (`narhub push` uploads it). Throws when the database cannot be read at
 * start; later failures are logged and retried at the next look.
 */
export async function startStoreWatcher(options: StoreWatcherOptions): Promise<StoreWatcher> {
  const cursorFile = join(options.stateDir, 'cursor');
  const intervalMs = options.intervalMs ?? 10_000;
  let lastId = await readCursor(cursorFile);
  if (lastId === undefined) {
    lastId = readNewPaths(options.database, Number.MAX_SAFE_INTEGER, 1).sequence;
    await writeCursor(cursorFile, lastId);
    options.log(`watch-store: starting at Nix's path id ${lastId}; paths registered from now on are pushed`);
  } else {
    // Fails here, at start, when the database cannot be read at all.
    readNewPaths(options.database, lastId, 1);
    options.log(`watch-store: resuming after Nix's path id ${lastId}`);
  }

  let closed = false;
  let running: Promise<void> | undefined;
  let again = false;

  const scanOnce = async (): Promise<void> => {
    for (;;) {
      const { paths, sequence } = readNewPaths(options.database, lastId!, PATHS_PER_ENTRY);
      if (sequence < lastId!) {
        options.log(
          `watch-store: Nix's database restarted its path ids (highest ${sequence}, below the ${lastId} seen): ` +
            `every path in it is new`,
        );
        lastId = 0;
        await writeCursor(cursorFile, 0);
        continue;
      }
      if (paths.length === 0) return;
      const list = paths.map((p) => p.path);
      appendToQueue(options.queueDir, list);
      lastId = paths[paths.length - 1]!.id;
      await writeCursor(cursorFile, lastId);
      options.onQueued(list);
      if (paths.length < PATHS_PER_ENTRY) return;
    }
  };

  const scan = (): Promise<void> => {
    if (closed) return Promise.resolve();
    if (running) {
      // One more look after the running one, for changes it may have missed.
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        try {
          await scanOnce();
        } catch (err) {
          options.log(`watch-store: ${(err as Error).message}; trying again in ${Math.round(intervalMs / 1000)} s`);
        }
      } while (again && !closed);
      running = undefined;
    })();
    return running;
  };

  let debounce: NodeJS.Timeout | undefined;
  const soon = () => {
    if (debounce || closed) return;
    debounce = setTimeout(() => {
      debounce = undefined;
      void scan();
    }, DEBOUNCE_MS);
  };

  let watcher: FSWatcher | undefined;
  const startWatch = () => {
    if (closed) return;
    try {
      watcher = watch(dirname(options.database), soon);
      watcher.on('error', (err) => {
        options.log(`watch-store: watching ${dirname(options.database)} failed (${err.message}); watching again`);
        watcher?.close();
        watcher = undefined;
        setTimeout(startWatch, intervalMs).unref();
      });
    } catch (err) {
      options.log(
        `watch-store: cannot watch ${dirname(options.database)} (${(err as Error).message}); looking every ` +
          `${Math.round(intervalMs / 1000)} s`,
      );
      setTimeout(startWatch, intervalMs).unref();
    }
  };
  startWatch();
  const timer = setInterval(() => void scan(), intervalMs);
  await scan();

  return {
    cursor: () => lastId!,
    scan,
    close() {
      closed = true;
      clearInterval(timer);
      if (debounce) clearTimeout(debounce);
      watcher?.close();
    },
  };
}
