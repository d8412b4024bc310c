import type { FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { NarhubError } from '../errors.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { Permission, TokenRow, TokenService } from '../cache/tokens.js';
import type { CacheRegistry } from '../cache/caches.js';
import { isValidCacheName } from '../cache-name.js';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The cache a request acts on, set by the authorization hook (`Access.cacheHook`) of the
     * context its route lives in, once the request may do what the route does to it. Routes
     * outside such a context never read it.
     */
    cache: CacheRow;
  }
}

/**
 * The secret a request presents: the password of HTTP Basic auth (any user name, which is what
 * Nix's netrc sends) or a Bearer token.
 */
function presentedSecret(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const space = authorization.indexOf(' ');
  if (space < 0) return undefined;
  const scheme = authorization.slice(0, space).toLowerCase();
  const value = authorization.slice(space + 1).trim();
  if (scheme === 'bearer') return value || undefined;
  if (scheme === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 ? decoded.slice(colon + 1) || undefined : undefined;
  }
  return undefined;
}

const resolved = new WeakMap<object, TokenRow | null>();

/**
 * Who may do what to which cache, decided per request from the database (so a revoked token
 * fails at its next request). `authorize` is the one decision: the routes' hooks and the
 * narinfo fast path both call it.
 */
export function createAccess(tokens: TokenService, registry: Pick<CacheRegistry, 'get'>) {
  function tokenFor(authorization: string | undefined): TokenRow | undefined {
    const secret = presentedSecret(authorization);
    return (secret && tokens.authenticate(secret)) || undefined;
  }

  /** The live token of a Fastify request, looked up once per request. */
  function tokenOf(request: FastifyRequest): TokenRow | undefined {
    let row = resolved.get(request);
    if (row === undefined) {
      row = tokenFor(request.headers.authorization) ?? null;
      resolved.set(request, row);
    }
    return row ?? undefined;
  }

  /**
   * The cache named `name` if `token` may do `permission` to it; otherwise throws the refusal.
   * A cache the caller may not read is, to that caller, indistinguishable from one that does not
   * exist: both answer the same 401, so private cache names cannot be probed. Only a caller whose
   * token would cover a cache of that name learns that there is none (404), and so does anyone
   * asking for a name no cache can have (reserved, like `healthz`, or malformed).
   */
  function authorize(name: string, permission: Permission, token: TokenRow | undefined, presented: boolean): CacheRow {
    const cache = registry.get(name);
    if (cache !== undefined && tokens.allows(token, name, permission)) return cache;
    const readable = cache !== undefined && (!cache.private || tokens.allows(token, name, 'read'));
    if (cache !== undefined && readable && permission === 'read') return cache;
    if (cache === undefined && (tokens.allows(token, name, 'read') || !isValidCacheName(name)))
      throw new NarhubError('CACHE_NOT_FOUND', `no cache named ${name}`);
    if (!readable) {
      throw new NarhubError(
        'UNAUTHORIZED',
        presented && !token
          ? 'the token is unknown, expired or revoked'
          : `cache ${name} does not exist or needs a token with read rights`,
      );
    }
    if (!token) {
      throw new NarhubError(
        'UNAUTHORIZED',
        presented
          ? 'the token is unknown, expired or revoked'
          : `cache ${name} needs a token with ${permission} rights`,
      );
    }
    throw new NarhubError('FORBIDDEN', `the token has no ${permission} rights on cache ${name}`);
  }

  /** `authorize` for a Fastify request. */
  function authorizeRequest(request: FastifyRequest, name: string, permission: Permission): CacheRow {
    return authorize(name, permission, tokenOf(request), request.headers.authorization !== undefined);
  }

  return {
    tokenFor,
    tokenOf,
    authorize,
    authorizeRequest,
    /**
     * The `preHandler` hook of a context whose routes all do `permission` to one cache: the
     * cache named by `cacheName(request)` (by default the `:cache` path parameter) is checked
     * and set as `request.cache` before any handler runs.
     */
    cacheHook(
      permission: Permission,
      cacheName: (request: FastifyRequest) => string = (request) => (request.params as { cache: string }).cache,
    ): preHandlerAsyncHookHandler {
      return async (request) => {
        request.cache = authorizeRequest(request, cacheName(request), permission);
      };
    },
    /** Whether the request may read the cache (for filtering lists; never throws). */
    canRead(request: FastifyRequest, name: string): boolean {
      try {
        authorizeRequest(request, name, 'read');
        return true;
      } catch {
        return false;
      }
    },
    /** The `preHandler` hook of routes open to any valid token. */
    anyTokenHook(): preHandlerAsyncHookHandler {
      return async (request) => {
        if (!tokenOf(request)) {
          throw new NarhubError(
            'UNAUTHORIZED',
            request.headers.authorization ? 'the token is unknown, expired or revoked' : 'a token is needed',
          );
        }
      };
    },
    /** Admin rights over every cache (`*`): what managing caches and tokens needs. */
    isGlobalAdmin(request: FastifyRequest): boolean {
      const token = tokenOf(request);
      return token?.permission === 'admin' && token.cachePattern === '*';
    },
  };
}

export type Access = ReturnType<typeof createAccess>;
