import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { NarhubError } from '../../errors.js';
import type { CacheService } from '../../cache/cache-service.js';
import { tokenView } from '../../cache/tokens.js';
import type { Access } from '../access.js';
import type { TypeboxApp } from '../typebox-app.js';
import { ErrorBody } from '../error-handler.js';

export interface AdminApiOptions {
  service: CacheService;
  access: Access;
  /** GC's grace periods (config `gc.pendingGracePeriod`, `gc.supersededGracePeriod`), in ms. */
  gc: { pendingGraceMs: number; supersededGraceMs: number };
}

const CacheName = Type.String({ minLength: 1, maxLength: 63 });
const CacheParams = Type.Object({ cache: CacheName });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Seconds = Type.Integer({ minimum: 1, description: 'Seconds since the last access after which a path goes.' });
const Bytes = Type.Integer({ minimum: 0, description: 'Most bytes of NAR files the cache may hold.' });

const Rewrite = Nullable(
  Type.Object(
    { done: Type.Integer(), total: Type.Integer(), complete: Type.Boolean() },
    { description: 'Narinfos rewritten for this key.' },
  ),
);
const Key = Type.Object({
  name: Type.String(),
  publicKey: Type.String({ description: '`name:base64`, as clients put it in trusted-public-keys.' }),
  state: Type.Union([Type.Literal('active'), Type.Literal('previous'), Type.Literal('retired')]),
  createdAt: Type.String({ format: 'date-time' }),
  rewrite: Rewrite,
});
const CacheInfo = Type.Object({
  name: Type.String(),
  private: Type.Boolean(),
  priority: Type.Integer(),
  redirectNars: Type.Boolean(),
  redirectExpiry: Type.Integer(),
  recompressToZstd: Type.Boolean(),
  retention: Nullable(Type.Integer()),
  quota: Nullable(Type.Integer()),
  uploaderKeys: Type.Array(Type.String(), {
    description: 'Public keys whose signatures uploads may carry; verified at upload.',
  }),
  refuseUnknownSignatures: Type.Boolean({
    description: "Signatures under any name but the cache's keys' and the uploader keys' are refused.",
  }),
  maxUploaderSignatures: Type.Integer({ description: "Most signatures under other names than the cache's per path." }),
  publicKeys: Type.Array(Type.String(), {
    description: 'Keys clients should trust, oldest first (retired ones left out).',
  }),
  keys: Type.Array(Key),
  signingKeys: Type.Array(Type.Object({ name: Type.String(), active: Type.Boolean() }), { deprecated: true }),
  createdAt: Type.String({ format: 'date-time' }),
});
const UploaderKeys = Type.Array(Type.String({ maxLength: 300 }), {
  maxItems: 100,
  description: 'Nix public keys (`name:base64`); signatures under their names are verified at upload and kept.',
});
const RefuseUnknown = Type.Boolean({
  description: "Refuse signatures under a name that is neither one of the cache's keys nor an uploader key.",
});
const MaxUploaderSignatures = Type.Integer({
  minimum: 0,
  maximum: 64,
  description: "Most signatures under names other than the cache's one path may carry (default 8).",
});
const CacheCreate = Type.Object(
  {
    name: CacheName,
    private: Type.Optional(Type.Boolean({ default: false })),
    priority: Type.Optional(Type.Integer({ minimum: 0, default: 40 })),
    retention: Type.Optional(Nullable(Seconds)),
    quota: Type.Optional(Nullable(Bytes)),
    uploaderKeys: Type.Optional(UploaderKeys),
    refuseUnknownSignatures: Type.Optional(RefuseUnknown),
    maxUploaderSignatures: Type.Optional(MaxUploaderSignatures),
  },
  { additionalProperties: false },
);
const CacheUpdateBody = Type.Object(
  {
    private: Type.Optional(Type.Boolean()),
    priority: Type.Optional(Type.Integer({ minimum: 0 })),
    retention: Type.Optional(Nullable(Seconds)),
    quota: Type.Optional(Nullable(Bytes)),
    uploaderKeys: Type.Optional(UploaderKeys),
    refuseUnknownSignatures: Type.Optional(RefuseUnknown),
    maxUploaderSignatures: Type.Optional(MaxUploaderSignatures),
  },
  { additionalProperties: false },
);
const Stats = Type.Object({
  cache: Type.String(),
  paths: Type.Integer(),
  bytes: Type.Integer({ description: 'Bytes of valid NAR files.' }),
  pendingNars: Type.Integer(),
  pendingBytes: Type.Integer(),
  narinfoHits: Nullable(Type.Integer({ description: 'Since the server started.' })),
  narinfoMisses: Nullable(Type.Integer()),
});
const Pin = Type.Object({
  name: Type.String(),
  storePath: Type.String(),
  expiresAt: Nullable(Type.String({ format: 'date-time' })),
  expired: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' }),
});
const PinCreate = Type.Object(
  {
    storePath: Type.String({ maxLength: 500 }),
    name: Type.Optional(Type.String({ maxLength: 128 })),
    expiresAt: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);
const GcCacheReport = Type.Object({
  cache: Type.String(),
  dryRun: Type.Boolean(),
  startedAt: Type.String({ format: 'date-time' }),
  retention: Nullable(Type.Integer()),
  quota: Nullable(Type.Integer()),
  paths: Type.Array(Type.Object({ storePath: Type.String(), bytes: Type.Integer() })),
  pathsRemoved: Type.Integer(),
  bytesFreed: Type.Integer(),
  bytesBefore: Type.Integer(),
  bytesAfter: Type.Integer(),
  kept: Type.Object({
    gone: Type.Integer(),
    accessed: Type.Integer(),
    referenced: Type.Integer(),
    held: Type.Integer(),
    pinned: Type.Integer(),
  }),
  logsRemoved: Type.Integer(),
  orphansFound: Type.Integer(),
  orphansRemoved: Type.Integer(),
});
const GcRun = Type.Object({
  dryRun: Type.Boolean(),
  pendingRemoved: Type.Integer(),
  supersededRemoved: Type.Integer(),
  staleUploadsAborted: Type.Integer({
    description: 'Multipart uploads (S3) started more than pendingGracePeriod ago by no live put, aborted.',
  }),
  caches: Type.Array(GcCacheReport),
});
const GcBody = Type.Object(
  { dryRun: Type.Optional(Type.Boolean({ default: false })) },
  { additionalProperties: false },
);
const Permission = Type.Union([
  Type.Literal('read'),
  Type.Literal('write'),
  Type.Literal('admin'),
  Type.Literal('trigger'),
]);
const TokenView = Type.Object({
  id: Type.String(),
  name: Nullable(Type.String()),
  cache: Type.String({ description: 'A cache name or glob (`*`, `team-*`); empty for a trigger token.' }),
  project: Nullable(Type.String({ description: 'The project a trigger token may trigger.' })),
  permission: Permission,
  status: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')]),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Nullable(Type.String({ format: 'date-time' })),
  revokedAt: Nullable(Type.String({ format: 'date-time' })),
  lastUsedAt: Nullable(Type.String({ format: 'date-time' })),
});
const TokenCreate = Type.Object(
  {
    cache: Type.Optional(
      Type.String({ minLength: 1, maxLength: 63, description: 'For read, write and admin: a cache name or glob.' }),
    ),
    permission: Permission,
    project: Type.Optional(Type.String({ minLength: 1, maxLength: 63, description: 'For trigger: its project.' })),
    name: Type.Optional(Type.String({ maxLength: 200 })),
    expiresAt: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);

function time(text: string | undefined, field: string): number | undefined {
  if (text === undefined) return undefined;
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new NarhubError('BAD_REQUEST', `body.${field}: not a date-time`);
  return t;
}

/**
 * The admin API under `/api/v1`: caches (create, update, info, stats), tokens, keys (rotate,
 * retire, import), pins and GC, each what the admin CLI does on a data directory. Routes on one
 * cache need an admin token for it; listing and creating caches, tokens and a GC of every cache
 * need an admin token over every cache (`*`).
 */
export const adminApiRoutes: FastifyPluginAsyncTypebox<AdminApiOptions> = async (app, opts) => {
  const { service, access } = opts;
  const { registry } = service;

  await app.register(async (global: TypeboxApp) => {
    global.addHook('preHandler', async (request: FastifyRequest) => {
      if (access.isGlobalAdmin(request)) return;
      throw new NarhubError(
        access.tokenOf(request) ? 'FORBIDDEN' : 'UNAUTHORIZED',
        'this needs an admin token over every cache (--cache "*")',
      );
    });
    global.get(
      '/caches',
      {
        schema: {
          summary: 'List caches',
          response: { 200: Type.Object({ caches: Type.Array(CacheInfo) }), '4xx': ErrorBody },
        },
      },
      async () => ({ caches: registry.list().map((c) => registry.info(c.name)) }),
    );
    global.post(
      '/caches',
      {
        schema: {
          summary: 'Create a cache and its signing key',
          body: CacheCreate,
          response: { 201: CacheInfo, '4xx': ErrorBody },
        },
      },
      async (request, reply) => {
        const b = request.body;
        await registry.create(b.name, {
          private: b.private ?? false,
          priority: b.priority ?? 40,
          retention: b.retention,
          quota: b.quota,
          uploaderKeys: b.uploaderKeys,
          refuseUnknownSignatures: b.refuseUnknownSignatures,
          maxUploaderSignatures: b.maxUploaderSignatures,
        });
        return reply.code(201).send(registry.info(b.name));
      },
    );
    global.post(
      '/gc',
      {
        schema: {
          summary: 'Collect garbage in every cache (or one), or say what would go',
          body: Type.Object(
            { cache: Type.Optional(CacheName), dryRun: Type.Optional(Type.Boolean()) },
            { additionalProperties: false },
          ),
          response: { 200: GcRun, '4xx': ErrorBody },
        },
      },
      async (request) => service.runGc({ ...opts.gc, cache: request.body.cache, dryRun: request.body.dryRun }),
    );
    global.get(
      '/tokens',
      {
        schema: {
          summary: 'List tokens (never their secrets)',
          response: { 200: Type.Object({ tokens: Type.Array(TokenView) }), '4xx': ErrorBody },
        },
      },
      async () => ({ tokens: service.tokens.list().map((row) => tokenView(row)) }),
    );
    global.post(
      '/tokens',
      {
        schema: {
          summary: 'Create a token; its secret is in this answer only',
          body: TokenCreate,
          response: { 201: Type.Composite([TokenView, Type.Object({ token: Type.String() })]), '4xx': ErrorBody },
        },
      },
      async (request, reply) => {
        const b = request.body;
        const { token, row } = service.tokens.create({
          cachePattern: b.cache ?? '',
          permission: b.permission,
          project: b.project,
          name: b.name,
          expiresAt: time(b.expiresAt, 'expiresAt'),
        });
        return reply
          .code(201)
          .header('cache-control', 'no-store')
          .send({ ...tokenView(row), token });
      },
    );
    global.delete(
      '/tokens/:id',
      {
        schema: {
          summary: 'Revoke a token',
          params: Type.Object({ id: Type.String({ maxLength: 100 }) }),
          response: { 204: Type.Null(), '4xx': ErrorBody },
        },
      },
      async (request, reply) => {
        service.tokens.revoke(request.params.id);
        return reply.code(204).send(null);
      },
    );
  });

  await app.register(async (one: TypeboxApp) => {
    one.addHook('preHandler', access.cacheHook('admin'));
    one.get(
      '/caches/:cache',
      {
        schema: {
          summary: 'A cache: settings, GC policy, keys',
          params: CacheParams,
          response: { 200: CacheInfo, '4xx': ErrorBody },
        },
      },
      async (request) => registry.info(request.cache.name),
    );
    one.patch(
      '/caches/:cache',
      {
        schema: {
          summary: 'Change visibility, priority or GC policy (null clears a policy); takes effect at once',
          params: CacheParams,
          body: CacheUpdateBody,
          response: { 200: CacheInfo, '4xx': ErrorBody },
        },
      },
      async (request) => {
        await registry.update(request.cache.name, request.body);
        return registry.info(request.cache.name);
      },
    );
    one.get(
      '/caches/:cache/stats',
      {
        schema: {
          summary: 'Paths, bytes, narinfo hits and misses',
          params: CacheParams,
          response: { 200: Stats, '4xx': ErrorBody },
        },
      },
      async (request) => service.stats(request.cache, true),
    );
    one.post(
      '/caches/:cache/gc',
      {
        schema: {
          summary: 'Collect garbage in this cache, or say what would go',
          params: CacheParams,
          body: GcBody,
          response: { 200: GcRun, '4xx': ErrorBody },
        },
      },
      async (request) => service.runGc({ ...opts.gc, cache: request.cache.name, dryRun: request.body.dryRun }),
    );
    one.get(
      '/caches/:cache/keys',
      {
        schema: {
          summary: 'Signing keys, states and rewrite progress',
          params: CacheParams,
          response: { 200: Type.Object({ keys: Type.Array(Key) }), '4xx': ErrorBody },
        },
      },
      async (request) => ({ keys: registry.keys(request.cache.name) }),
    );
    one.post(
      '/caches/:cache/keys/rotate',
      {
        schema: {
          summary: 'Add the next key generation as active; re-sign every path in the background',
          params: CacheParams,
          response: { 201: Key, '4xx': ErrorBody },
        },
      },
      async (request, reply) => reply.code(201).send(registry.rotateKey(request.cache.name)),
    );
    one.post(
      '/caches/:cache/keys/import',
      {
        schema: {
          summary: 'Adopt an existing Nix secret key as active; re-sign every path in the background',
          params: CacheParams,
          body: Type.Object(
            {
              secretKey: Type.String({
                maxLength: 1000,
                description: '`name:base64`, as nix-store --generate-binary-cache-key writes it.',
              }),
            },
            { additionalProperties: false },
          ),
          response: { 201: Key, '4xx': ErrorBody },
        },
      },
      async (request, reply) =>
        reply.code(201).send(registry.importKey(request.cache.name, request.body.secretKey.trim())),
    );
    one.post(
      '/caches/:cache/keys/:key/retire',
      {
        schema: {
          summary: 'Retire a previous key: refused until re-signing is complete; then its signatures are removed',
          params: Type.Object({ cache: CacheName, key: Type.String({ maxLength: 200 }) }),
          response: { 200: Key, '4xx': ErrorBody },
        },
      },
      async (request) => registry.retireKey(request.cache.name, request.params.key),
    );
    one.get(
      '/caches/:cache/pins',
      {
        schema: {
          summary: 'Pins',
          params: CacheParams,
          response: { 200: Type.Object({ pins: Type.Array(Pin) }), '4xx': ErrorBody },
        },
      },
      async (request) => ({ pins: service.pins.list(request.cache) }),
    );
    one.post(
      '/caches/:cache/pins',
      {
        schema: {
          summary: 'Pin a path: its closure survives GC',
          params: CacheParams,
          body: PinCreate,
          response: { 201: Pin, '4xx': ErrorBody },
        },
      },
      async (request, reply) =>
        reply.code(201).send(
          service.pins.add(request.cache, request.body.storePath, {
            name: request.body.name,
            expiresAt: time(request.body.expiresAt, 'expiresAt') ?? null,
          }),
        ),
    );
    one.delete(
      '/caches/:cache/pins/:name',
      {
        schema: {
          summary: 'Remove a pin',
          params: Type.Object({ cache: CacheName, name: Type.String({ maxLength: 128 }) }),
          response: { 204: Type.Null(), '4xx': ErrorBody },
        },
      },
      async (request, reply) => {
        service.pins.remove(request.cache, request.params.name);
        return reply.code(204).send(null);
      },
    );
  });
};
