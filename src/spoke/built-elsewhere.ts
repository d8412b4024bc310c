import { setTimeout as sleep } from 'node:timers/promises';
import { readHeartbeats, type HeartbeatStore } from '../protocol/heartbeats.js';
import { CacheFetchError, type CacheClient } from './cache-client.js';

/** How often a spoke looks again whether another one still builds the derivation of its job. */
const POLL_MS = 500;

/**
 * Waits while another live spoke (its heartbeat lists the derivation as running) builds the
 * derivation of this job, and returns that spoke's id (undefined when none was). A job reaches a
 * second spoke while the first still builds it when the first lost its BullMQ lock: its event
 * loop starved or its process stopped for longer than the lock duration, and BullMQ took the
 * job for stalled. Building it again would build it twice; the first spoke's outputs reach the
 * cache instead, where the caller then finds them. A spoke that died stops beating and is no
 * longer waited for. Ends early (returning what it waited for so far) when `signal` aborts.
 */
export async function waitForOtherBuilder(
  redis: HeartbeatStore,
  self: string,
  drvHash: string,
  signal: AbortSignal,
  onWait: (spoke: string) => void,
): Promise<string | undefined> {
  let waitedFor: string | undefined;
  while (!signal.aborted) {
    const other = (await readHeartbeats(redis)).find((s) => s.id !== self && s.running?.includes(drvHash));
    if (!other) break;
    if (waitedFor !== other.id) onWait(other.id);
    waitedFor = other.id;
    await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
  }
  return waitedFor;
}

/**
 * True when every output is a path of the cache, signed by a key the job trusts: the derivation
 * was built already (by a spoke whose job result was lost, or that another spoke waited for), so
 * building it again would only build it twice.
 */
export async function outputsInCache(
  cache: CacheClient,
  outputs: Record<string, string>,
  signal: AbortSignal,
): Promise<boolean> {
  const paths = Object.values(outputs);
  if (paths.length === 0) return false;
  for (const path of paths) {
    try {
      if ((await cache.narinfo(path, signal)) === null) return false;
    } catch (err) {
      // A path the cache has but no trusted key signed is built here, like a missing one.
      if (err instanceof CacheFetchError && !err.retryable) return false;
      throw err;
    }
  }
  return true;
}
