import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CacheService } from '../cache/cache-service.js';
import type { CacheRow } from '../db/caches-repo.js';
import { isValidHashPart } from '../nix/store-path.js';
import { formatCacheInfo } from '../nix/cache-info.js';

// What a narinfo and a nix-cache-info answer carry, here so that the route
// (routes/binary-cache.ts) and the fast path send exactly the same bytes.
export const NARINFO_TYPE = 'text/x-nix-narinfo';
export const NARINFO_CACHE_CONTROL = 'max-age=3600';
export const CACHE_INFO_TYPE = 'text/x-nix-cache-info';
export const CACHE_INFO_CACHE_CONTROL = 'max-age=300';

export function cacheControl(cache: Pick<CacheRow, 'private'>, value: string): string {
  return cache.private ? `private, ${value}` : `public, ${value}`;
}

export function cacheInfoBody(cache: CacheRow): string {
  return formatCacheInfo({ storeDir: '/nix/store', wantMassQuery: true, priority: cache.priority });
}

const HASH_PART_LENGTH = 32;
const NARINFO_SUFFIX = '.narinfo';
const CACHE_INFO_FILE = 'nix-cache-info';
const SLASH = 0x2f;

export interface NarinfoFastPath {
  /**
   * Answers the request and returns true, or returns false without touching it (Fastify then
   * handles it).
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** From now on answer nothing: Fastify's drain answers 503 while the server closes. */
  close(): void;
  /** How many requests this path answered (tests check that it is really taken). */
  readonly served: number;
}

/** Requests the fast path found no narinfo for, a moment before handing them to the route. */
const misses = new WeakMap<IncomingMessage, { cacheId: number; hashPart: string }>();

/**
 * Whether the fast path has just looked this very narinfo up for this request and found
 * nothing: the route then answers 404 without a second database read.
 */
export function narinfoMissedByFastPath(req: IncomingMessage, cache: CacheRow, hashPart: string): boolean {
  const miss = misses.get(req);
  return miss !== undefined && miss.cacheId === cache.id && miss.hashPart === hashPart;
}

/**
 * The hottest request a cache serves, answered in the HTTP server's `request` listener before
 * Fastify sees it: `GET`/`HEAD /<cache>/<hash>.narinfo` (and `/<cache>/nix-cache-info`) of a
 * **public** cache, from a request **without** `Authorization`, when the narinfo exists. The
 * answer is exactly the route's (`routes/binary-cache.ts`, same constants): status, headers in
 * the same order, body; Node adds Date, Connection and Keep-Alive to both alike. The reads are
 * the route's own (cache row and narinfo, both memoized: cache/caches.ts, cache/narinfo-memo.ts).
 * Everything else goes to Fastify untouched: private caches and tokens (checked per request
 * against the database there, so a revoked token fails at once), misses (404; the route is told
 * this path just found nothing, so it does not read again), other methods and URL shapes, query
 * strings, encoded characters.
 * Fastify with a trivial route costs ~24 µs of CPU per request here, bare Node `http` ~18.5 µs
 * (bench/README.md).
 *
 * Not used when request logging is on: the route logs every request, this path logs nothing.
 */
export function createNarinfoFastPath(service: Pick<CacheService, 'registry' | 'narinfo'>): NarinfoFastPath {
  const narinfoControl = cacheControl({ private: false }, NARINFO_CACHE_CONTROL);
  const cacheInfoControl = cacheControl({ private: false }, CACHE_INFO_CACHE_CONTROL);
  let open = true;
  let served = 0;

  function send(res: ServerResponse, type: string, control: string, body: string): true {
    served++;
    // For HEAD, Node sends the headers only; the length is the GET's, as the route's.
    res.writeHead(200, [
      'content-type',
      type,
      'cache-control',
      control,
      'content-length',
      String(Buffer.byteLength(body)),
    ]);
    res.end(body);
    return true;
  }

  function handle(req: IncomingMessage, res: ServerResponse): boolean {
    const method = req.method;
    if ((method !== 'GET' && method !== 'HEAD') || !open) return false;
    const url = req.url!;
    const slash = url.indexOf('/', 1);
    if (slash < 2 || url.charCodeAt(0) !== SLASH) return false;
    if (req.headers.authorization !== undefined) return false;
    // Cache names are plain (`cache-name.ts`): a name with `%` finds no cache here, and Fastify
    // decodes and routes it.
    const cache = service.registry.get(url.slice(1, slash));
    if (cache === undefined || cache.private) return false;

    const fileLength = url.length - slash - 1;
    if (fileLength === HASH_PART_LENGTH + NARINFO_SUFFIX.length && url.endsWith(NARINFO_SUFFIX)) {
      const hashPart = url.slice(slash + 1, slash + 1 + HASH_PART_LENGTH);
      if (!isValidHashPart(hashPart)) return false;
      const text = service.narinfo(cache, hashPart);
      if (text !== undefined) return send(res, NARINFO_TYPE, narinfoControl, text);
      // The route answers the 404 (and logs it as it does); it need not read the database again.
      misses.set(req, { cacheId: cache.id, hashPart });
      return false;
    }
    if (fileLength === CACHE_INFO_FILE.length && url.endsWith(CACHE_INFO_FILE)) {
      return send(res, CACHE_INFO_TYPE, cacheInfoControl, cacheInfoBody(cache));
    }
    return false;
  }

  return {
    handle,
    close() {
      open = false;
    },
    get served() {
      return served;
    },
  };
}
