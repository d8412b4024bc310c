/**
 * Runs work for the same key one at a time, in arrival order, within this process; each piece
 * of work sees what the one before it did. A key is forgotten once its last work has settled.
 * The cache uses it around writes of one NAR file name (native uploads, recompression) and
 * around commits of one path.
 */
export function createKeyedLock() {
  const tails = new Map<string, Promise<void>>();
  return {
    run<T>(key: string, work: () => Promise<T>): Promise<T> {
      const result = (tails.get(key) ?? Promise.resolve()).then(work);
      const tail = result.then(
        () => undefined,
        () => undefined,
      );
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return result;
    },
  };
}

export type KeyedLock = ReturnType<typeof createKeyedLock>;
