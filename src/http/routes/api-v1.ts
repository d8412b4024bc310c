import { setImmediate as yieldToLoop } from 'node:timers/promises';
import rateLimit from '@fastify/rate-limit';
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NarhubError } from '../../errors.js';
import { isValidHashPart } from '../../nix/store-path.js';
import type { CacheService } from '../../cache/cache-service.js';
import type { Access } from '../access.js';
import type { TypeboxApp } from '../typebox-app.js';
import { clientGoneSignal } from '../client-gone.js';
import { ErrorBody } from '../error-handler.js';

export interface ApiV1RouteOptions {
  service: CacheService;
  access: Access;
  maxNarSize: number;
  /** missing-paths requests a minute per address from callers without a valid token (unset: no limit). */
  missingPathsPerMinute?: number | undefined;
}

const CacheParams = Type.Object({ cache: Type.String({ minLength: 1, maxLength: 63 }) });
const PathParams = Type.Object({
  cache: Type.String({ minLength: 1, maxLength: 63 }),
  hashPart: Type.String({ minLength: 1, maxLength: 100, description: 'The hash part of the store path.' }),
});
const StorePath = Type.String({ maxLength: 500 });

/**
 * Store paths one missing-paths request may ask about. A bigger closure takes several requests
 * (`narhub push` sends 10 000 at a time): one request then costs the loop a few milliseconds of
 * JSON at most, and many of them interleave.
 */
export const MISSING_PATHS_PER_REQUEST = 10_000;
/** Paths looked up between two turns of the event loop. */
const MISSING_PATHS_CHUNK = 1_000;

const MissingPathsBody = Type.Object(
  { storePaths: Type.Array(StorePath, { maxItems: MISSING_PATHS_PER_REQUEST }) },
  { additionalProperties: false },
);
const MissingPathsAnswer = Type.Object({
  missing: Type.Array(StorePath, { description: 'The asked paths this cache does not have, in the order asked.' }),
  upstreamKeyNames: Type.Array(Type.String(), {
    description:
      "Names of the keys this cache's upstreams are trusted under. A path signed by one needs no upload: " +
      'narhub fetches it from its upstream when a client or an upload needs it (narhub push skips such paths).',
  }),
});
const UpstreamPathsAnswer = Type.Object({
  served: Type.Array(StorePath, {
    description: 'The asked paths the cache lacks and one of its upstreams has (signed by a key it is trusted under).',
  }),
});
const UploadAnswer = Type.Object({
  storePath: Type.String(),
  created: Type.Boolean({ description: 'False when the path was already there.' }),
  stored: Type.Boolean({ description: 'False when narhub already held a verified copy of this NAR.' }),
  url: Type.String(),
  compression: Type.String(),
  fileHash: Type.String(),
  fileSize: Type.Integer(),
  narHash: Type.String(),
  narSize: Type.Integer(),
});

/** 10 000 store paths of the longest kind (~260 bytes) as JSON, with room to spare. */
const MISSING_PATHS_BODY_LIMIT = 3 * 1024 * 1024;

/**
 * narhub's own API for caches, at `/api/v1/caches/:cache`: JSON in and out (errors as
 * `{ "code", "message" }`), for clients that want more than the Nix protocol offers
 * (`narhub push`). Each route lives in the encapsulated context of the rights it needs, whose
 * `preHandler` checks them and sets `request.cache`.
 */
export const apiV1Routes: FastifyPluginAsyncTypebox<ApiV1RouteOptions> = async (app, opts) => {
  const { service, access } = opts;

  await app.register(async (read: TypeboxApp) => {
    read.addHook('preHandler', access.cacheHook('read'));
    // Callers without a valid token are limited per address; the limit answers before the body
    // is read. Token holders are not: they are known and can be revoked.
    await read.register(rateLimit, {
      global: false,
      allowList: (request) => access.tokenOf(request) !== undefined,
      errorResponseBuilder: (_request, context) =>
        new NarhubError(
          'RATE_LIMITED',
          `at most ${context.max} missing-paths requests a minute without a token; retry in ${context.after}`,
        ),
    });

    read.post(
      '/caches/:cache/missing-paths',
      {
        bodyLimit: MISSING_PATHS_BODY_LIMIT,
        config: opts.missingPathsPerMinute
          ? { rateLimit: { max: opts.missingPathsPerMinute, timeWindow: '1 minute' } }
          : {},
        schema: {
          summary: 'Which of these store paths the cache lacks',
          description:
            `At most ${MISSING_PATHS_PER_REQUEST} paths a request; without a token, a limited number of requests ` +
            'a minute per address (429 with Retry-After past it).',
          params: CacheParams,
          body: MissingPathsBody,
          response: { 200: MissingPathsAnswer, '4xx': ErrorBody },
        },
      },
      async (request, reply) => {
        // In chunks, yielding between them, so that a large request never holds the loop long.
        const { storePaths } = request.body;
        const missing: string[] = [];
        const seen = new Set<string>();
        for (let start = 0; start < storePaths.length; start += MISSING_PATHS_CHUNK) {
          if (start > 0) await yieldToLoop();
          const chunk = storePaths.slice(start, start + MISSING_PATHS_CHUNK);
          let found: string[];
          try {
            found = service.missingPaths(request.cache, chunk);
          } catch (err) {
            // Name the entry by its place in the whole request, not in the chunk.
            if (err instanceof NarhubError && start > 0)
              throw new NarhubError(
                err.code,
                err.message.replace(/^storePaths\[(\d+)\]/, (_m, i: string) => `storePaths[${Number(i) + start}]`),
              );
            throw err;
          }
          for (const path of found) {
            if (seen.has(path)) continue;
            seen.add(path);
            missing.push(path);
          }
        }
        const upstreamKeyNames = service.upstreamKeyNames(request.cache);
        return reply.header('cache-control', 'no-store').send({ missing, upstreamKeyNames });
      },
    );

    read.post(
      '/caches/:cache/upstream-paths',
      {
        bodyLimit: MISSING_PATHS_BODY_LIMIT,
        config: opts.missingPathsPerMinute
          ? { rateLimit: { max: opts.missingPathsPerMinute, timeWindow: '1 minute' } }
          : {},
        schema: {
          summary: "Which of these store paths the cache's upstreams serve",
          description:
            'For paths missing-paths named and a key in its upstreamKeyNames signs: those an upstream has ' +
            'need no upload (narhub fetches them when a client or an upload needs them). Each is looked up as ' +
            `a narinfo miss would be. At most ${MISSING_PATHS_PER_REQUEST} paths a request.`,
          params: CacheParams,
          body: MissingPathsBody,
          response: { 200: UpstreamPathsAnswer, '4xx': ErrorBody },
        },
      },
      async (request, reply) => {
        const byName = new Map(request.body.storePaths.map((p) => [p.slice(p.lastIndexOf('/') + 1), p]));
        const served = await service.pullThrough.offeredAmong(request.cache, [...byName.keys()]);
        return reply.header('cache-control', 'no-store').send({ served: served.map((b) => byName.get(b)!) });
      },
    );
  });

  await app.register(async (write: TypeboxApp) => {
    write.addHook('preHandler', access.cacheHook('write'));
    // Upload bodies are streams the handler consumes itself, whatever their type.
    write.removeAllContentTypeParsers();
    write.addContentTypeParser('*', (_request, _payload, done) => done(null));

    write.put(
      '/caches/:cache/paths/:hashPart',
      {
        schema: {
          summary: 'Upload one store path',
          description:
            'The body is one line of compact JSON, at most 1 MiB, ' +
            '`{storePath, narHash, narSize, references, deriver?, ca?, sigs?, compression?}`, ' +
            'ended by `\\n`, then the raw NAR, or with `"compression":"zstd"` the NAR as one zstd frame, ' +
            'which is stored as sent once it decodes to that NAR (Content-Length optional). ' +
            '201 when the path was created, 200 when it was there.',
          params: PathParams,
          response: { 200: UploadAnswer, 201: UploadAnswer, '4xx': ErrorBody },
        },
      },
      async (request, reply) => {
        const { cache } = request;
        const { hashPart } = request.params;
        try {
          if (!isValidHashPart(hashPart))
            throw new NarhubError(
              'STORE_PATH_INVALID',
              `invalid store path hash ${JSON.stringify(hashPart.slice(0, 100))}`,
            );
          const result = await service.uploadPath(cache, hashPart, request.raw, {
            signal: clientGoneSignal(reply),
            maxSize: opts.maxNarSize,
          });
          request.log.info(
            {
              cache: cache.name,
              hashPart,
              created: result.created,
              stored: result.stored,
              narSize: result.nar.narSize,
              fileSize: result.nar.fileSize,
            },
            result.created ? 'path uploaded' : 'path re-uploaded',
          );
          return reply.code(result.created ? 201 : 200).send({
            storePath: result.info.storePath,
            created: result.created,
            stored: result.stored,
            url: `nar/${result.nar.fileName}`,
            compression: result.nar.compression,
            fileHash: result.nar.fileHash,
            fileSize: result.nar.fileSize,
            narHash: result.nar.narHash,
            narSize: result.nar.narSize,
          });
        } catch (err) {
          // Read what is left, so the client gets the answer instead of a reset connection.
          if (!request.raw.readableEnded && !request.raw.destroyed) request.raw.resume();
          throw err;
        }
      },
    );
  });
};
