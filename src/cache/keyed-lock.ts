/**
 * Runs work for the same key one at a time, in arrival order, within this process. Used around
 * writes of one NAR file name by native uploads and recompression, so the bytes under a key and
 * the record describing them always come from the same writer.
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
