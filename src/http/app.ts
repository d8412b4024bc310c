import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { CacheService } from '../cache/cache-service.js';
import { createAccess } from './access.js';
import { installErrorHandler } from './error-handler.js';
import { apiV1Routes } from './routes/api-v1.js';
import { binaryCacheRoutes } from './routes/binary-cache.js';
import { healthRoutes } from './routes/health.js';
import { hubApiRoutes } from './routes/hub-api.js';
import type { Hub } from '../hub/hub-service.js';

export interface AppOptions {
  service: CacheService;
  logger?: Logger | undefined;
  maxNarSize: number;
  maxSmallFileSize: number;
  /** The build hub, when it runs: adds its routes under /api/v1. */
  hub?: Hub | undefined;
  /**
   * Log every request ("incoming request" / "request completed" at info). Off by default: at
   * tens of thousands of narinfo requests a second the two log lines cost more than the request.
   */
  logRequests?: boolean | undefined;
}

/**
 * Builds the HTTP app without listening, so tests drive it with `inject` and the CLI owns the
 * socket. Every route group is registered explicitly.
 */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger | undefined,
    logController: new LogController({ disableRequestLogging: options.logRequests !== true }),
    // Uploads of large NARs take as long as they take; idle sockets are still reaped.
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: 75_000,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    exposeHeadRoutes: false,
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, maxParamLength: 500 },
  });
  installErrorHandler(app);
  const access = createAccess(options.service.tokens);
  await app.register(healthRoutes, { service: options.service });
  await app.register(apiV1Routes, { prefix: '/api/v1', service: options.service, access, maxNarSize: options.maxNarSize });
  if (options.hub) await app.register(hubApiRoutes, { prefix: '/api/v1', hub: options.hub, service: options.service, access });
  await app.register(binaryCacheRoutes, {
    service: options.service,
    access,
    maxNarSize: options.maxNarSize,
    maxSmallFileSize: options.maxSmallFileSize,
  });
  return app;
}
