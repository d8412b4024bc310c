import type { FastifyInstance } from 'fastify';
import type { CacheService } from '../../cache/cache-service.js';
import type { Hub } from '../../hub/hub-service.js';

/**
 * Liveness and readiness in one: the database answers and the blob store is reachable. With the
 * hub, its Redis connection too; Redis away makes the answer `degraded`, not a failure, since the
 * cache serves without it.
 */
export async function healthRoutes(
  app: FastifyInstance,
  opts: { service: CacheService; hub?: Pick<Hub, 'health'> | undefined },
): Promise<void> {
  app.get('/healthz', async (_request, reply) => {
    const checks: Record<string, string> = {};
    let ok = true;
    try {
      opts.service.registry.list();
      checks.database = 'ok';
    } catch {
      checks.database = 'failing';
      ok = false;
    }
    try {
      await opts.service.store.stat('healthz-probe');
      checks.storage = 'ok';
    } catch {
      checks.storage = 'failing';
      ok = false;
    }
    const redis = opts.hub?.health().redis;
    if (redis !== undefined) checks.redis = redis;
    const status = !ok ? 'failing' : redis !== undefined && redis !== 'ok' ? 'degraded' : 'ok';
    return reply
      .code(ok ? 200 : 503)
      .header('cache-control', 'no-store')
      .send({ status, checks });
  });
}
