import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { NarhubError } from '../../errors.js';
import { isValidHashPart } from '../../nix/store-path.js';
import { MAX_MISSING_PATHS_QUERY, type CacheService } from '../../cache/cache-service.js';
import type { CacheRow } from '../../db/caches-repo.js';
import type { Access } from '../access.js';
import { clientGoneSignal } from '../client-gone.js';

export interface ApiV1RouteOptions {
  service: CacheService;
  access: Access;
  maxNarSize: number;
}

type CacheParams = { cache: string };

/** 100 000 store paths of ~90 bytes as JSON, with room to spare. */
const MISSING_PATHS_BODY_LIMIT = 16 * 1024 * 1024;

/**
 * narhub's own API, at `/api/v1`: JSON in and out (errors as `{ "code", "message" }`), for
 * clients that want more than the Nix protocol offers (`narhub push`).
 */
export async function apiV1Routes(app: FastifyInstance, opts: ApiV1RouteOptions): Promise<void> {
  const { service, access } = opts;

  function cacheOf(name: string): CacheRow {
    const cache = service.registry.get(name);
    if (!cache) throw new NarhubError('CACHE_NOT_FOUND', `no cache named ${name}`);
    return cache;
  }

  // POST /caches/:cache/missing-paths  { "storePaths": [...] } → { "missing": [...] }
  app.post(
    '/caches/:cache/missing-paths',
    { bodyLimit: MISSING_PATHS_BODY_LIMIT },
    async (request: FastifyRequest<{ Params: CacheParams }>, reply) => {
      const cache = cacheOf(request.params.cache);
      access.requireRead(request, cache);
      const body = request.body as unknown;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new NarhubError('BAD_REQUEST', 'body must be a JSON object {"storePaths": [...]}');
      }
      const storePaths = (body as { storePaths?: unknown }).storePaths;
      if (!Array.isArray(storePaths))
        throw new NarhubError('BAD_REQUEST', 'storePaths must be an array of store paths');
      if (storePaths.length > MAX_MISSING_PATHS_QUERY) {
        throw new NarhubError(
          'BAD_REQUEST',
          `storePaths has ${storePaths.length} entries, more than the ${MAX_MISSING_PATHS_QUERY} one query may ask about`,
        );
      }
      const bad = storePaths.findIndex((p) => typeof p !== 'string');
      if (bad >= 0) throw new NarhubError('BAD_REQUEST', `storePaths[${bad}] must be a string`);
      return reply
        .header('cache-control', 'no-store')
        .send({ missing: service.missingPaths(cache, storePaths as string[]) });
    },
  );

  // Upload bodies are streams the handler consumes itself, whatever their type.
  await app.register(async (raw) => {
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', (_request, _payload, done) => done(null));

    // PUT /caches/:cache/paths/:hashPart   body: metadata JSON line, "\n", the raw NAR.
    raw.put(
      '/caches/:cache/paths/:hashPart',
      async (request: FastifyRequest<{ Params: CacheParams & { hashPart: string } }>, reply: FastifyReply) => {
        const { hashPart } = request.params;
        try {
          const cache = cacheOf(request.params.cache);
          access.requireWrite(request, cache);
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
}
