import type { FastifyRequest } from 'fastify';
import { NarhubError } from '../errors.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { Permission, TokenRow, TokenService } from '../cache/tokens.js';

/**
 * The secret a request presents: the password of HTTP Basic auth (any user name, which is what
 * Nix's netrc sends) or a Bearer token.
 */
export function presentedSecret(authorization: string | undefined): string | undefined {
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

const resolved = new WeakMap<FastifyRequest, TokenRow | null>();

/** Who may do what to which cache, decided per request from the database. */
export function createAccess(tokens: TokenService) {
  function tokenOf(request: FastifyRequest): TokenRow | undefined {
    let row = resolved.get(request);
    if (row === undefined) {
      const secret = presentedSecret(request.headers.authorization);
      row = (secret && tokens.authenticate(secret)) || null;
      resolved.set(request, row);
    }
    return row ?? undefined;
  }

  function require(request: FastifyRequest, cache: CacheRow, permission: Permission): TokenRow | undefined {
    const token = tokenOf(request);
    if (tokens.allows(token, cache.name, permission)) return token;
    if (permission === 'read' && !cache.private) return token;
    if (!token) {
      const presented = request.headers.authorization !== undefined;
      throw new NarhubError(
        'UNAUTHORIZED',
        presented
          ? 'the token is unknown, expired or revoked'
          : `cache ${cache.name} needs a token with ${permission} rights`,
      );
    }
    // A private cache must not reveal more to a token scoped elsewhere than to no token at all.
    if (permission === 'read')
      throw new NarhubError('UNAUTHORIZED', `cache ${cache.name} needs a token with read rights`);
    throw new NarhubError('FORBIDDEN', `the token has no ${permission} rights on cache ${cache.name}`);
  }

  return {
    tokenOf,
    requireRead: (request: FastifyRequest, cache: CacheRow) => require(request, cache, 'read'),
    requireWrite: (request: FastifyRequest, cache: CacheRow) => require(request, cache, 'write'),
    requireAdmin: (request: FastifyRequest, cache: CacheRow) => require(request, cache, 'admin'),
    /** Admin rights over every cache (`*`): what managing caches and tokens needs. */
    isGlobalAdmin(request: FastifyRequest): boolean {
      const token = tokenOf(request);
      return token?.permission === 'admin' && token.cachePattern === '*';
    },
  };
}

export type Access = ReturnType<typeof createAccess>;
