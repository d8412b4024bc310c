import { open } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * fsync of directories, shared by the puts that wait for one: a put needs an fsync of its
 * directory that starts after its rename, so while one runs, every put arriving meanwhile waits
 * for the next, single one. Many small puts into one directory then cost a few fsyncs, not one
 * each. (An fsync of a directory is about its entries, whichever descriptor it goes through.)
 */
export function createDirSyncer(): (dir: string) => Promise<void> {
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
export async function syncDirs(from: string, to: string): Promise<void> {
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
