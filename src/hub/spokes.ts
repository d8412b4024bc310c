import type { Redis } from 'ioredis';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { REDIS_PREFIX, spokeCanServe, type SpokeHeartbeat } from '../protocol/build-jobs.js';

/** Connected spokes, from their heartbeats (keys with a TTL: a spoke that stops beating disappears). */
async function readSpokes(redis: Redis): Promise<SpokeHeartbeat[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${REDIS_PREFIX}:spoke:*`, 'COUNT', 500);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  const values = await redis.mget(...keys);
  const spokes: SpokeHeartbeat[] = [];
  for (const v of values) {
    if (v === null) continue;
    try {
      const hb = JSON.parse(v) as SpokeHeartbeat;
      if (typeof hb.id === 'string' && Array.isArray(hb.systems) && Array.isArray(hb.features)) spokes.push(hb);
    } catch {
      // not a heartbeat
    }
  }
  return spokes.sort((a, b) => a.id.localeCompare(b.id));
}

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
