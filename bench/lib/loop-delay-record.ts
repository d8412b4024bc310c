// The line format of bench/lib/loop-delay.ts, shared with the side that reads it.

export interface LoopDelayRecord {
  /** End of the second it covers, ms since the epoch. */
  t: number;
  maxMs: number;
  p99Ms: number;
  meanMs: number;
}

export const LOOP_DELAY_TAG = 'narhubBenchLoopDelay';

/** The record in one stderr line of a narhub process, if that line is one. */
export function parseLoopDelay(line: string): LoopDelayRecord | undefined {
  if (!line.includes(LOOP_DELAY_TAG)) return undefined;
  try {
    return (JSON.parse(line) as Record<string, LoopDelayRecord>)[LOOP_DELAY_TAG];
  } catch {
    return undefined;
  }
}
