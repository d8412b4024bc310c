import { REDIS_PREFIX, type SpokeHeartbeat } from './build-jobs.js';

/** The two Redis commands reading heartbeats takes (ioredis's signatures), so this file needs no Redis client. */
export interface HeartbeatStore {
  scan(cursor: string, match: 'MATCH', pattern: string, count: 'COUNT', n: number): Promise<[string, string[]]>;
  mget(...keys: string[]): Promise<(string | null)[]>;
}

/**
 * The live spokes, from their heartbeats (keys with a TTL: a spoke that stops beating
 * disappears), sorted by id. Read by the hub (who can build what) and by spokes (who is
 * building a derivation right now).
 */
export async function readHeartbeats(redis: HeartbeatStore): Promise<SpokeHeartbeat[]> {
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
