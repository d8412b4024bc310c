/**
 * Counts the turns this thread's event loop makes while `work` runs: a setImmediate callback
 * that re-arms itself runs once per turn, so the count only advances while the loop is free.
 * Whatever runs synchronously on the loop (a codec, a hash) adds nothing, however long it
 * takes; waiting for another thread, a socket or the disk adds a turn at every wake-up. Progress
 * counts, not milliseconds: the speed and load of the machine only change how large they get.
 */
export async function loopTurnsDuring<T>(work: () => Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0;
  let running = true;
  const spin = (): void => {
    if (!running) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  try {
    const value = await work();
    return { value, turns };
  } finally {
    running = false;
  }
}
