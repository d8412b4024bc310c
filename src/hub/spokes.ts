import type { Redis } from 'ioredis';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { spokeCanServe, type SpokeHeartbeat } from '../protocol/build-jobs.js';
import { readHeartbeats } from '../protocol/heartbeats.js';

/** Connected spokes, from their heartbeats. */
const readSpokes = (redis: Redis): Promise<SpokeHeartbeat[]> => readHeartbeats(redis);

/** Spokes the hub works with: those speaking this protocol version. */
export function compatible(spoke: SpokeHeartbeat): boolean {
  return Math.trunc(Number(spoke.protocol)) === PROTOCOL_VERSION;
}

/** Why a build waiting in its queue is not running, given the connected spokes. */
export function waitingReason(
  spokes: readonly SpokeHeartbeat[],
  system: string,
  requiredFeatures: readonly string[],
): string {
  const live = spokes.filter(compatible);
  if (live.length === 0) return 'no spoke is connected';
  if (!live.some((s) => spokeCanServe(s, system, requiredFeatures))) {
    const features = requiredFeatures.length > 0 ? ` with features ${requiredFeatures.join(', ')}` : '';
    return `no connected spoke can build ${system}${features}`;
  }
  return 'waiting for a free spoke';
}

/** Caches heartbeat reads for a moment: the API may ask for every build of a large evaluation. */
export function createSpokeDirectory(redis: Redis, ttlMs = 2_000) {
  let cached: { at: number; spokes: Promise<SpokeHeartbeat[]> } | undefined;
  return {
    list(): Promise<SpokeHeartbeat[]> {
      const now = Date.now();
      if (!cached || now - cached.at > ttlMs) {
        const spokes = readSpokes(redis);
        cached = { at: now, spokes };
        spokes.catch(() => (cached = undefined));
      }
      return cached.spokes;
    },
  };
}
