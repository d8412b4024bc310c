import { NarhubError } from '../errors.js';

export interface CacheLocation {
  /** The server's base URL (no trailing slash), under which `/api/v1` lives. */
  base: string;
  /** The cache name: the last segment of the substituter URL. */
  cache: string;
  /** Host name, for netrc look-ups (netrc matches the host, not the port). */
  host: string;
}

/**
 * Splits a substituter URL such as `http://127.0.0.1:8080/main` (or
 * `https://example.org/narhub/main`) into the server base and the cache name.
 */
export function parseCacheUrl(text: string): CacheLocation {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid cache URL ${JSON.stringify(text)}: expected e.g. http://127.0.0.1:8080/main`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid cache URL ${JSON.stringify(text)}: only http:// and https:// are supported`,
    );
  }
  if (url.search !== '' || url.hash !== '') {
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid cache URL ${JSON.stringify(text)}: no query or fragment (narhub picks the compression itself)`,
    );
  }
  const segments = url.pathname.split('/').filter((s) => s !== '');
  const cache = segments.pop();
  if (cache === undefined)
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid cache URL ${JSON.stringify(text)}: it names no cache (e.g. ${url.origin}/main)`,
    );
  const prefix = segments.length > 0 ? `/${segments.join('/')}` : '';
  return { base: `${url.origin}${prefix}`, cache: decodeURIComponent(cache), host: url.hostname };
}
