import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

/** The OpenAPI document's own route, relative to `/api/v1`. */
export const OPENAPI_PATH = '/openapi.json';

/**
 * `/api/v1/openapi.json`: the OpenAPI 3.1 document `@fastify/swagger` generates from every
 * `/api/v1` route's TypeBox schemas (registered in `http/app.ts`).
 */
export const apiIndexRoutes: FastifyPluginAsyncTypebox = async (app) => {
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
