import { NarhubError } from '../errors.js';

/** Names that would shadow narhub's own top-level routes. */
const RESERVED = new Set(['api', 'healthz', 'metrics', 'static', 'nar', 'log']);

/** A cache name is the first URL segment, a storage prefix and part of a key name: keep it plain. */
export function assertValidCacheName(name: string): void {
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(name)) {
    throw new NarhubError(
      'CACHE_NAME_INVALID',
      `invalid cache name ${JSON.stringify(name)}: use 1-63 of a-z, 0-9, - and _, starting with a letter or digit`,
    );
  }
  if (RESERVED.has(name)) throw new NarhubError('CACHE_NAME_INVALID', `cache name ${name} is reserved`);
}
