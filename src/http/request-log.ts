import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';

/** A Nix store path hash part (Nix32, 32 characters). */
const HASH_PART = /^[0-9a-df-np-sv-z]{32}$/;

/**
 * `onRequest` hook: the request's logger (which already carries `reqId`) also carries the cache
 * and the store path (its hash part) or NAR file the route's parameters name, so every line a
 * request logs, its errors included, says what it was about. Secrets are never bound here, and the
 * logger redacts `authorization` and `token` fields wherever they appear (src/logger.ts).
 */
export function requestLogBindings(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const params = request.params as Record<string, string | undefined> | undefined;
  const cache = params?.cache;
  if (cache !== undefined) {
    const bindings: Record<string, string> = { cache };
    const file = params?.file;
    const hash =
      params?.hashPart ?? (file?.endsWith('.narinfo') || file?.endsWith('.ls') ? file.slice(0, 32) : undefined);
    if (hash !== undefined && HASH_PART.test(hash)) bindings.storePath = hash;
    else if (file !== undefined && request.routeOptions.url?.includes('/nar/')) bindings.narFile = file.slice(0, 120);
    if (params?.drv !== undefined) bindings.drv = params.drv.slice(0, 200);
    // Both: Fastify logs a request's completion through the reply's logger.
    const log = request.log.child(bindings);
    request.log = log;
    reply.log = log;
  }
  done();
}
