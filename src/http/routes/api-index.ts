import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NarhubError } from '../../errors.js';

/** The OpenAPI document's own route, relative to `/api/v1`. */
const OPENAPI_PATH = '/openapi.json';

const ApiIndex = Type.Object({
  name: Type.Literal('narhub'),
  api: Type.Literal('v1'),
  openapi: Type.String({ description: 'Where the OpenAPI document of this API is.' }),
  routes: Type.Array(Type.Object({ method: Type.String(), path: Type.String() }), {
    description: 'Every route of this API: its method and path pattern (`:name` is a parameter).',
  }),
});

export interface ApiIndexOptions {
  /** Where the API lives (`/api/v1`). */
  base: string;
  /** The API's routes, as Fastify registered them (read at each request: all are there by then). */
  routes: () => readonly { method: string; url: string }[];
}

/**
 * `/api/v1` itself: the API's index, and `/api/v1/openapi.json`, the OpenAPI 3.1 document
 * `@fastify/swagger` generates from every `/api/v1` route's TypeBox schemas (registered in
 * `http/app.ts`).
 */
export const apiIndexRoutes: FastifyPluginAsyncTypebox<ApiIndexOptions> = async (app, opts) => {
  app.get('', { schema: { summary: "This API's index", response: { 200: ApiIndex } } }, async (_request, reply) =>
    reply.header('cache-control', 'no-store').send({
      name: 'narhub' as const,
      api: 'v1' as const,
      openapi: `${opts.base}${OPENAPI_PATH}`,
      routes: opts.routes().map((r) => ({ method: r.method, path: r.url })),
    }),
  );

  app.get(
    OPENAPI_PATH,
    {
      schema: {
        summary: 'This API as an OpenAPI 3.1 document',
        response: { 200: Type.Object({}, { additionalProperties: true }) },
      },
    },
    async (_request, reply) => reply.header('cache-control', 'no-store').send(app.swagger()),
  );
};

/**
 * Everything under `/api/` that no API route takes: a JSON 404, so that nothing there ever falls
 * through to the cache routes (`/:cache/…`, which would answer for a cache named `api`).
 * Fastify's router prefers this static prefix to a `:cache` parameter.
 */
export const apiFallbackRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // Whatever the body, the answer is the same 404: it is never parsed.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  app.all('/api/*', { schema: { hide: true } }, async (request) => {
    throw new NarhubError(
      'NOT_FOUND',
      `no API route ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}; see GET /api/v1`,
    );
  });
};
