import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Registry } from 'prom-client';
import { NarhubError } from '../../errors.js';
import type { Access } from '../access.js';

/** Loopback addresses, as a socket reports them (IPv4, IPv6, IPv4-mapped IPv6). */
function isLoopback(address: string | undefined): boolean {
  return (
    address !== undefined && (address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.'))
  );
}

/**
 * `GET /metrics`, the Prometheus text format of `prom-client`'s registry: open to a scraper on
 * the same machine, otherwise only to an admin token over every cache.
 */
export const metricsRoutes: FastifyPluginAsyncTypebox<{ registry: Registry; access: Access }> = async (app, opts) => {
  app.addHook('preHandler', async (request) => {
    if (isLoopback(request.socket.remoteAddress) || opts.access.isGlobalAdmin(request)) return;
    throw new NarhubError(
      opts.access.tokenOf(request) ? 'FORBIDDEN' : 'UNAUTHORIZED',
      'metrics need a loopback connection or an admin token over every cache',
    );
  });
  app.get('/metrics', async (_request, reply) =>
    reply
      .header('cache-control', 'no-store')
      .type(opts.registry.contentType)
      .send(await opts.registry.metrics()),
  );
};
