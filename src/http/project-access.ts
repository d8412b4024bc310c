import { isNarhubError, NarhubError } from '../errors.js';
import type { CacheService } from '../cache/cache-service.js';
import type { TokenRow } from '../cache/tokens.js';

/**
 * Who may see and act on hub records, for a token however it came (a header or a browser
 * session): a project, its evaluations and builds are readable like the cache it builds into
 * (anyone for a public cache); acting needs admin rights on that cache; triggering also accepts
 * a `trigger` token for that one project.
 */
export function createProjectAccess(service: CacheService) {
  const { tokens, registry } = service;
  const isPublic = (cache: string) => registry.get(cache)?.private === false;

  function canRead(token: TokenRow | undefined, cache: string): boolean {
    return isPublic(cache) || tokens.allows(token, cache, 'read');
  }
  function refuse(token: TokenRow | undefined, presented: boolean, what: string): never {
    if (!token)
      throw new NarhubError(
        'UNAUTHORIZED',
        presented ? 'the token is unknown, expired or revoked' : `${what} needs a token`,
      );
    throw new NarhubError('FORBIDDEN', `the token may not ${what}`);
  }

  return {
    canRead,
    isPublic,
    /**
     * The cache a project, evaluation or build (`cacheOf` throws NOT_FOUND for a missing one)
     * belongs to, when the caller may read it. One it may not read answers exactly as a missing
     * one does, as for caches: only a token that reads every cache learns that there is none.
     */
    readableCache(token: TokenRow | undefined, presented: boolean, what: string, cacheOf: () => string): string {
      let cache: string | undefined;
      try {
        cache = cacheOf();
      } catch (err) {
        if (!(isNarhubError(err) && err.code === 'NOT_FOUND')) throw err;
        if (tokens.allows(token, '*', 'read')) throw err;
      }
      if (cache !== undefined && canRead(token, cache)) return cache;
      throw new NarhubError(
        'UNAUTHORIZED',
        presented && !token
          ? 'the token is unknown, expired or revoked'
          : `${what} does not exist or needs a token with read rights`,
      );
    },
    canAdmin(token: TokenRow | undefined, cache: string): boolean {
      return tokens.allows(token, cache, 'admin');
    },
    requireAdmin(token: TokenRow | undefined, presented: boolean, cache: string, what: string): void {
      if (!tokens.allows(token, cache, 'admin')) refuse(token, presented, what);
    },
    canTrigger(token: TokenRow | undefined, project: string, cache: string): boolean {
      return tokens.mayTrigger(token, project, cache);
    },
    requireTrigger(token: TokenRow | undefined, presented: boolean, project: string, cache: string): void {
      if (!tokens.mayTrigger(token, project, cache)) refuse(token, presented, `trigger project ${project}`);
    },
  };
}

export type ProjectAccess = ReturnType<typeof createProjectAccess>;
