import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CacheService } from '../cache/cache-service.js';
import type { CacheRow } from '../db/caches-repo.js';
import { isValidHashPart } from '../nix/store-path.js';
import { formatCacheInfo } from '../nix/cache-info.js';
import type { Access } from './access.js';
import type { RequestMetrics } from './request-metrics.js';

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
  /** Step aside while `pressed()` is true, so that Fastify's load shedding answers (503). */
  shedWhile(pressed: () => boolean): void;
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

/** The routes (`routes/binary-cache.ts`) the fast path stands in for, as metrics label them. */
const NARINFO_ROUTE = '/:cache/:file';
const CACHE_INFO_ROUTE = '/:cache/nix-cache-info';

/**
 * The hottest request a cache serves, answered in the HTTP server's `request` listener before
 * Fastify sees it: `GET`/`HEAD /<cache>/<hash>.narinfo` (and `/<cache>/nix-cache-info`) when the
 * request may read the cache and the narinfo exists. It shares with the route everything but
 * Fastify: the authorization decision (`Access.authorize`, which the route's hook calls too; a
 * token is checked against the database per request, so revocation is seen at once), the reads
 * (cache row and narinfo, both memoized: cache/caches.ts, cache/narinfo-memo.ts), the answer's
 * constants, and the request metrics (`RequestMetrics.observe`, under the route's own label). The
 * answer is exactly the route's: status, headers in the same order, body; Node adds Date,
 * Connection and Keep-Alive to both alike (`test/integration/http/narinfo-fast-path*.test.ts`
 * prove it for any request). Everything else goes to Fastify untouched: refusals (the route's
 * hook throws the same refusal, and the error handler words it), misses (404; the route is told
 * this path just found nothing, so it does not read again), other methods and URL shapes, query
 * strings, encoded characters.
 * Fastify with a trivial route costs ~24 µs of CPU per request here, bare Node `http` ~18.5 µs
 * (bench/README.md).
 *
 * Not used when request logging is on: the route logs every request, this path logs nothing.
 */
export function createNarinfoFastPath(deps: {
  service: Pick<CacheService, 'narinfo'>;
  access: Pick<Access, 'authorize' | 'tokenFor'>;
  metrics: Pick<RequestMetrics, 'series'>;
}): NarinfoFastPath {
  const { service, access, metrics } = deps;
  const controls = (isPrivate: boolean) => ({
    narinfo: cacheControl({ private: isPrivate }, NARINFO_CACHE_CONTROL),
    cacheInfo: cacheControl({ private: isPrivate }, CACHE_INFO_CACHE_CONTROL),
  });
  const publicControl = controls(false);
  const privateControl = controls(true);
  // The only series this path records: a 200 of either route, by GET or HEAD.
  const observe: Record<string, Record<string, (seconds: number) => void>> = {};
  for (const method of ['GET', 'HEAD']) {
    observe[method] = {
      [NARINFO_ROUTE]: metrics.series(method, NARINFO_ROUTE, 200),
      [CACHE_INFO_ROUTE]: metrics.series(method, CACHE_INFO_ROUTE, 200),
    };
  }
  let open = true;
  let served = 0;
  let pressed = () => false;

  function send(
    req: IncomingMessage,
    res: ServerResponse,
    started: number,
    route: string,
    type: string,
    control: string,
    body: string,
  ): true {
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
    observe[req.method!]![route]!((performance.now() - started) / 1000);
    return true;
  }

  /** The cache if this request may read it; undefined hands the request to Fastify. */
  function readable(req: IncomingMessage, name: string): CacheRow | undefined {
    const authorization = req.headers.authorization;
    try {
      return access.authorize(name, 'read', access.tokenFor(authorization), authorization !== undefined);
    } catch {
      return undefined;
    }
  }

  function handle(req: IncomingMessage, res: ServerResponse): boolean {
    const method = req.method;
    if ((method !== 'GET' && method !== 'HEAD') || !open || pressed()) return false;
    const started = performance.now();
    const url = req.url!;
    const slash = url.indexOf('/', 1);
    if (slash < 2 || url.charCodeAt(0) !== SLASH) return false;
    const fileLength = url.length - slash - 1;
    const narinfo = fileLength === HASH_PART_LENGTH + NARINFO_SUFFIX.length && url.endsWith(NARINFO_SUFFIX);
    const cacheInfo = !narinfo && fileLength === CACHE_INFO_FILE.length && url.endsWith(CACHE_INFO_FILE);
    if (!narinfo && !cacheInfo) return false;
    const hashPart = narinfo ? url.slice(slash + 1, slash + 1 + HASH_PART_LENGTH) : '';
    if (narinfo && !isValidHashPart(hashPart)) return false;
    // Cache names are plain (`src/cache-name.ts`): a name with `%` finds no cache here, and Fastify
    // decodes and routes it.
    const cache = readable(req, url.slice(1, slash));
    if (cache === undefined) return false;
    if (cacheInfo) {
      const control = cache.private ? privateControl.cacheInfo : publicControl.cacheInfo;
      return send(req, res, started, CACHE_INFO_ROUTE, CACHE_INFO_TYPE, control, cacheInfoBody(cache));
    }
    const text = service.narinfo(cache, hashPart);
    const control = cache.private ? privateControl.narinfo : publicControl.narinfo;
    if (text !== undefined) return send(req, res, started, NARINFO_ROUTE, NARINFO_TYPE, control, text);
    // The route answers the 404 (and logs it as it does); it need not read the database again.
    misses.set(req, { cacheId: cache.id, hashPart });
    return false;
  }

  return {
    handle,
    close() {
      open = false;
    },
    shedWhile(fn) {
      pressed = fn;
    },
    get served() {
      return served;
    },
  };
}
