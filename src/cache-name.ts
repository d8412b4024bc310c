// A cache's name: the first segment of its URLs, its storage prefix, part of its key names, and
// what the hub tells a spoke to push to. A leaf every layer may use, like errors.ts.
import { NarhubError } from './errors.js';

/** 1-63 of a-z, 0-9, - and _, starting with a letter or digit (as a TypeBox `pattern`, too). */
export const CACHE_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,62}$';
const CACHE_NAME = new RegExp(CACHE_NAME_PATTERN);

/** Names that would shadow narhub's own top-level routes. */
const RESERVED = new Set(['api', 'healthz', 'metrics', 'static', 'nar', 'log', 'ui']);

export function isValidCacheName(name: string): boolean {
  return CACHE_NAME.test(name) && !RESERVED.has(name);
}

/** A cache name is the first URL segment, a storage prefix and part of a key name: keep it plain. */
export function assertValidCacheName(name: string): void {
  if (!CACHE_NAME.test(name)) {
    throw new NarhubError(
      'CACHE_NAME_INVALID',
      `invalid cache name ${JSON.stringify(name)}: use 1-63 of a-z, 0-9, - and _, starting with a letter or digit`,
    );
  }
  if (RESERVED.has(name)) throw new NarhubError('CACHE_NAME_INVALID', `cache name ${name} is reserved`);
}
