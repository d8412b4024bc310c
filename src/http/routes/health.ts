import type { FastifyInstance } from 'fastify';
import type { CacheService } from '../../cache/cache-service.js';

/** Liveness and readiness in one: the database answers and the blob store is reachable. */
export async function healthRoutes(app: FastifyInstance, opts: { service: CacheService }): Promise<void> {
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
    return reply
      .code(ok ? 200 : 503)
      .header('cache-control', 'no-store')
      .send({ status: ok ? 'ok' : 'failing', checks });
  });
}
