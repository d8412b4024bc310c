import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { CacheService } from '../../cache/cache-service.js';
import type { Access } from '../access.js';
import { ErrorBody } from '../error-handler.js';

export interface UpstreamApiOptions {
  service: CacheService;
  access: Access;
}

const CacheParams = Type.Object({ cache: Type.String({ minLength: 1, maxLength: 63 }) });
const Url = Type.String({
  minLength: 1,
  maxLength: 2000,
  description: 'Base URL of the upstream binary cache, e.g. https://cache.nixos.org.',
});
const PublicKeys = Type.Array(Type.String({ maxLength: 200 }), {
  minItems: 1,
  maxItems: 64,
  description: "Keys it is trusted under, `name:base64` as in nix.conf's trusted-public-keys.",
});
const Priority = Type.Integer({ minimum: 0, description: 'Upstreams are asked in this order, lower first.' });

const Upstream = Type.Object({
  url: Url,
  publicKeys: PublicKeys,
  priority: Priority,
  declared: Type.Boolean({ description: 'Declared in the config file, which alone may change or remove it.' }),
});
const UpstreamAdd = Type.Object(
  { url: Url, publicKeys: PublicKeys, priority: Type.Optional(Type.Integer({ minimum: 0, default: 50 })) },
  { additionalProperties: false },
);
const UpstreamRemove = Type.Object({ url: Url }, { additionalProperties: false });

/**
 * A cache's upstreams (pull-through caching) under `/api/v1/caches/:cache/upstreams`: what
 * `narhub upstream add|list|remove` does on a data directory. Every route needs an admin token
 * for the cache.
 */
export const upstreamApiRoutes: FastifyPluginAsyncTypebox<UpstreamApiOptions> = async (app, opts) => {
  const { service, access } = opts;
  app.addHook('preHandler', access.cacheHook('admin'));

  app.get(
    '/caches/:cache/upstreams',
    {
      schema: {
        summary: "List a cache's upstreams, in the order a miss asks them",
        params: CacheParams,
        response: { 200: Type.Object({ upstreams: Type.Array(Upstream) }), '4xx': ErrorBody },
      },
    },
    async (request, reply) =>
      reply.header('cache-control', 'no-store').send({ upstreams: service.upstreams.list(request.cache) }),
  );

  app.post(
    '/caches/:cache/upstreams',
    {
      schema: {
        summary: 'Add an upstream, or change the keys and priority of the one with this URL',
        params: CacheParams,
        body: UpstreamAdd,
        response: { 200: Upstream, '4xx': ErrorBody },
      },
    },
    async (request) => service.upstreams.add(request.cache, request.body),
  );

  app.delete(
    '/caches/:cache/upstreams',
    {
      schema: {
        summary: 'Remove an upstream; the paths fetched from it stay',
        params: CacheParams,
        querystring: UpstreamRemove,
        response: { 204: Type.Null(), '4xx': ErrorBody },
      },
    },
    async (request, reply) => {
      service.upstreams.remove(request.cache, request.query.url);
      return reply.code(204).send(null);
    },
  );
};
