import { NarhubError } from '../../errors.js';
import { formatPublicKey, parsePublicKey } from '../../nix/signing.js';
import type { NewUpstream } from '../../db/upstreams-repo.js';

/** Nix's default substituter priority; cache.nixos.org says 40. */
const DEFAULT_UPSTREAM_PRIORITY = 50;

/**
 * An upstream as the config file, the CLI or the API give it, checked and in its one spelling:
 * an http(s) base URL without credentials, query or trailing slash (so `add` of the same cache
 * twice finds it), at least one valid Nix public key, and a priority ≥ 0.
 */
export function normaliseUpstream(input: {
  url: string;
  publicKeys: string[];
  priority?: number | undefined;
}): NewUpstream {
  return {
    url: normaliseUpstreamUrl(input.url),
    publicKeys: normalisePublicKeys(input.publicKeys),
    priority: normalisePriority(input.priority ?? DEFAULT_UPSTREAM_PRIORITY),
  };
}

export function normaliseUpstreamUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new NarhubError('BAD_REQUEST', `upstream URL ${JSON.stringify(text.slice(0, 200))} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new NarhubError('BAD_REQUEST', `upstream URL ${url.protocol} is not http: or https:`);
  // Secrets never sit in the database or in listings.
  if (url.username !== '' || url.password !== '')
    throw new NarhubError('BAD_REQUEST', 'upstream URL must not carry credentials');
  if (url.search !== '' || url.hash !== '')
    throw new NarhubError('BAD_REQUEST', 'upstream URL must not have a query or a fragment');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function normalisePublicKeys(keys: string[]): string[] {
  const parsed = keys.flatMap((k) => k.split(/\s+/)).filter((k) => k !== '');
  if (parsed.length === 0)
    throw new NarhubError('KEY_INVALID', 'an upstream needs at least one public key it is trusted under');
  return [...new Set(parsed.map((k) => formatPublicKey(parsePublicKey(k))))];
}

function normalisePriority(priority: number): number {
  if (!Number.isSafeInteger(priority) || priority < 0)
    throw new NarhubError('BAD_REQUEST', `upstream priority must be a whole number ≥ 0, got ${priority}`);
  return priority;
}
