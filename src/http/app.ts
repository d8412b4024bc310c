import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import swagger from '@fastify/swagger';
import underPressure from '@fastify/under-pressure';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import './schema-formats.js';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CacheService } from '../cache/cache-service.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { LimitsConfig } from '../config/schema.js';
import { bodyDeadline } from './body-deadline.js';
import { createAccess } from './access.js';
import { installErrorHandler, loadShedError, validationError } from './error-handler.js';
import { createNarinfoFastPath, type NarinfoFastPath } from './narinfo-fast-path.js';
import { adminApiRoutes } from './routes/admin-api.js';
import { apiFallbackRoutes, apiIndexRoutes } from './routes/api-index.js';
import { apiV1Routes } from './routes/api-v1.js';
import { binaryCacheRoutes } from './routes/binary-cache.js';
import { healthRoutes } from './routes/health.js';
import { hubApiRoutes } from './routes/hub-api.js';
import { metricsRoutes } from './routes/metrics.js';
import { type HubStats, registerOpsMetrics } from './ops-metrics.js';
import { requestLogBindings } from './request-log.js';
import { upstreamApiRoutes } from './routes/upstream-api.js';
import { registerUpstreamMetrics } from './upstream-metrics.js';
import type { Hub } from '../hub/hub-service.js';
import { createRequestMetrics, UNMATCHED_ROUTE } from './request-metrics.js';
import type { Forge } from '../forge/forge-service.js';
import { ciApiRoutes } from './routes/ci-api.js';
import { uiRoutes } from './ui/ui-routes.js';
import { createProjectAccess } from './project-access.js';

export interface AppOptions {
  service: CacheService;
  logger?: Logger | undefined;
  maxNarSize: number;
  maxSmallFileSize: number;
  /** The build hub, when it runs: adds its routes under /api/v1. */
  hub?: Hub | undefined;
  /** The CI's forge side (webhooks, triggers, approvals), with the hub; with both, the web UI is served under /ui/. */
  forge?: Forge | undefined;
  /** The server's base URL (for substituter lines in the UI), once known. */
  publicUrl?: (() => string) | undefined;
  /**
   * Log every request ("incoming request" / "request completed" at info). Off by default: at
   * tens of thousands of narinfo requests a second the two log lines cost more than the request.
   */
  logRequests?: boolean | undefined;
  /**
   * Answer narinfo GET/HEADs of public caches before Fastify (`narinfo-fast-path.ts`). On by
   * default, always off with `logRequests`; tests turn it off to compare with the route.
   */
  narinfoFastPath?: boolean | undefined;
  /**
   * Connection cap, slow bodies, load shedding, anonymous rate limits (`limits` in the config,
   * whose defaults `serve` passes). Each limit applies only when given: tests run the app in
   * their own process, whose synchronous work would otherwise look like an overloaded loop.
   */
  limits?: Partial<LimitsConfig> | undefined;
  /** The hub's queues, spokes and builds for the metrics, when the hub runs. */
  hubStats?: (() => Promise<HubStats>) | undefined;
  /** GC's grace periods for runs started through the admin API (default: a day, 40 days). */
  gc?: { pendingGraceMs: number; supersededGraceMs: number } | undefined;
}

/** Seconds a client shed for load is told to wait. */
const RETRY_AFTER_SECONDS = 5;

/** Where narhub's JSON API lives. */
const API_PREFIX = '/api/v1';

// Uploads of large NARs take as long as they take; idle sockets are still reaped.
const SERVER_TIMEOUTS = { requestTimeout: 0, connectionTimeout: 0, keepAliveTimeout: 75_000 } as const;

const fastPaths = new WeakMap<FastifyInstance, NarinfoFastPath>();
const apiRoutes = new WeakMap<FastifyInstance, ApiRoute[]>();

export interface ApiRoute {
  method: string;
  /** Fastify's pattern, `/api/v1/caches/:cache/missing-paths`. */
  url: string;
}

/** Every route under `/api/v1`, as Fastify registered them (for the index and tests). */
export function apiRoutesOf(app: FastifyInstance): readonly ApiRoute[] {
  return apiRoutes.get(app) ?? [];
}

const metricsRegistries = new WeakMap<FastifyInstance, Registry>();

/** The registry `/metrics` serves (for a separate metrics listener, `metricsListen`). */
export function metricsRegistryOf(app: FastifyInstance): Registry {
  return metricsRegistries.get(app)!;
}

/** The app's narinfo fast path, if it has one (for tests). */
export function narinfoFastPathOf(app: FastifyInstance): NarinfoFastPath | undefined {
  return fastPaths.get(app);
}

/**
 * Builds the HTTP app without listening, so tests drive it with `inject` and the CLI owns the
 * socket. Every route group is registered explicitly.
 */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { service } = options;
  const limits = options.limits ?? {};
  const access = createAccess(service.tokens, service.registry);
  const metrics = createRequestMetrics();
  registerUpstreamMetrics(metrics.registry, service.upstreamStats);
  const fastPath =
    options.logRequests !== true && options.narinfoFastPath !== false
      ? createNarinfoFastPath({ service, access, metrics })
      : undefined;
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger | undefined,
    logController: new LogController({ disableRequestLogging: options.logRequests !== true }),
    ...SERVER_TIMEOUTS,
    // With a fast path, the server is ours, so its request listener can go first; Fastify does
    // not apply its timeouts to a server it did not create, so they are set here as it would.
    // Requests it answers never reach Fastify: a hook meant for every request (onRequest, rate
    // limits, CORS) would need the fast path to step aside or do the same.
    ...(fastPath && {
      serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
        const server = createServer((req, res) => {
          if (!fastPath.handle(req, res)) handler(req, res);
        });
        server.keepAliveTimeout = SERVER_TIMEOUTS.keepAliveTimeout;
        server.requestTimeout = SERVER_TIMEOUTS.requestTimeout;
        server.setTimeout(SERVER_TIMEOUTS.connectionTimeout);
        return server;
      },
    }),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    exposeHeadRoutes: false,
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, maxParamLength: 500 },
    schemaErrorFormatter: validationError,
  }).withTypeProvider<TypeBoxTypeProvider>();
  // Every route declares its schemas in TypeBox; handlers take their types from them, and
  // TypeBox checks them (unknown keys are errors where a schema says so; query strings and path
  // parameters are converted to the schema's types first).
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  app.decorateRequest('cache', null as unknown as CacheRow);
  installErrorHandler(app);
  if (limits.maxConnections !== undefined) app.server.maxConnections = limits.maxConnections;
  if (limits.bodyTimeout !== undefined) {
    app.addHook(
      'onRequest',
      bodyDeadline({ windowSeconds: limits.bodyTimeout, minBytesPerSecond: limits.minBodyRate ?? 0 }),
    );
  }
  // Shed load before latency collapses: while the event loop lags, new requests get 503 with
  // Retry-After (the fast path steps aside meanwhile, so its requests are shed too).
  if (limits.maxEventLoopDelay) {
    await app.register(underPressure, {
      maxEventLoopDelay: limits.maxEventLoopDelay,
      retryAfter: RETRY_AFTER_SECONDS,
      pressureHandler: async (_request, reply, type, value) => {
        reply.header('retry-after', String(RETRY_AFTER_SECONDS));
        throw loadShedError(`overloaded (${type} ${Math.round(Number(value))}), retry later`);
      },
    });
    fastPath?.shedWhile(() => app.isUnderPressure());
  }
  registerOpsMetrics(metrics.registry, service, options.hubStats).watch(app.server);
  metricsRegistries.set(app, metrics.registry);
  // Every log line of a request names its cache and store path (or NAR file) where the URL says.
  app.addHook('onRequest', requestLogBindings);
  const routes: ApiRoute[] = [];
  apiRoutes.set(app, routes);
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith(API_PREFIX)) return;
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });
  app.addHook('onResponse', (request, reply, done) => {
    metrics.observe(
      request.method,
      request.routeOptions.url ?? UNMATCHED_ROUTE,
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
    done();
  });
  if (fastPath) {
    fastPaths.set(app, fastPath);
    // Fastify answers 503 once it is closing; the fast path must not answer 200 meanwhile.
    app.addHook('preClose', async () => fastPath.close());
  }
  // The OpenAPI document of the JSON API, from the schemas of the routes registered after this.
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'narhub API',
        version: 'v1',
        description: 'narhub\'s JSON API. Errors are `{ "code", "message" }` with a stable code.',
      },
      components: {
        securitySchemes: {
          basic: { type: 'http', scheme: 'basic', description: 'A narhub token as the password (any user name).' },
          bearer: { type: 'http', scheme: 'bearer', description: 'A narhub token.' },
        },
      },
      security: [{}, { basic: [] }, { bearer: [] }],
    },
    // Only the JSON API: the Nix protocol's routes are Nix's, documented in docs/protocol.md.
    transform: ({ schema, url, route }) => ({
      schema: url.startsWith(API_PREFIX) ? schema : { ...schema, hide: true },
      url,
      route,
    }),
  });
  await app.register(healthRoutes, { service, hub: options.hub });
  await app.register(metricsRoutes, { registry: metrics.registry, access });
  await app.register(apiIndexRoutes, { prefix: API_PREFIX, base: API_PREFIX, routes: () => routes });
  await app.register(apiFallbackRoutes);
  await app.register(apiV1Routes, {
    prefix: API_PREFIX,
    service: service,
    access,
    maxNarSize: options.maxNarSize,
    missingPathsPerMinute: limits.missingPathsPerMinute,
  });
  await app.register(adminApiRoutes, {
    prefix: API_PREFIX,
    service,
    access,
    gc: options.gc ?? { pendingGraceMs: 86_400_000, supersededGraceMs: 40 * 86_400_000 },
  });
  await app.register(upstreamApiRoutes, { prefix: API_PREFIX, service, access });
  const projectAccess = createProjectAccess(service);
  if (options.hub)
    await app.register(hubApiRoutes, { prefix: '/api/v1', hub: options.hub, service: service, access, projectAccess });
  if (options.hub && options.forge) {
    const ci = { hub: options.hub, forge: options.forge, service, access, projectAccess };
    await app.register(ciApiRoutes, { prefix: '/api/v1', ...ci });
  }
  // The web UI: the caches' pages always, the hub's with a hub.
  const publicUrl = options.publicUrl ?? (() => '');
  const ui = { hub: options.hub, forge: options.forge, service, projectAccess, publicUrl };
  await app.register(uiRoutes, { prefix: '/ui', ...ui });
  app.get('/', async (_request, reply) => reply.redirect('/ui/', 302));
  await app.register(binaryCacheRoutes, {
    service: service,
    access,
    maxNarSize: options.maxNarSize,
    maxSmallFileSize: options.maxSmallFileSize,
  });
  return app;
}
