import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { NarhubError } from '../../errors.js';
import { isValidHashPart } from '../../nix/store-path.js';
import { createDecompressor, type Compression } from '../../io/compression.js';
import type { CacheRow } from '../../db/caches-repo.js';
import type { FileKind } from '../../db/files-repo.js';
import type { CacheService } from '../../cache/cache-service.js';
import type { Access } from '../access.js';
import { clientGoneSignal } from '../client-gone.js';
import {
  CACHE_INFO_CACHE_CONTROL,
  CACHE_INFO_TYPE,
  NARINFO_CACHE_CONTROL,
  NARINFO_TYPE,
  cacheControl,
  cacheInfoBody,
  narinfoMissedByFastPath,
} from '../narinfo-fast-path.js';
import { parseRange } from '../range.js';
import { readSmallBody } from '../../io/read-small-body.js';
import { replyBody } from '../recycling-body.js';

export interface BinaryCacheRouteOptions {
  service: CacheService;
  access: Access;
  maxNarSize: number;
  maxSmallFileSize: number;
}

type CacheParams = { cache: string };
type Req<P = object> = FastifyRequest<{ Params: CacheParams & P }>;

/** Encodings a client may send small files with (Nix 2.32+ narinfo/ls/log-compression). */
const BODY_ENCODINGS: Record<string, Compression> = { br: 'br', gzip: 'gzip', zstd: 'zstd', xz: 'xz', bzip2: 'bzip2' };

const NAR_CACHE_CONTROL = 'max-age=31536000, immutable';

/**
 * The Nix binary-cache protocol, per cache, at `/<cache>/…`. Routes only validate, call the
 * cache domain and set headers; anything not listed here is a real 404.
 */
export async function binaryCacheRoutes(app: FastifyInstance, opts: BinaryCacheRouteOptions): Promise<void> {
  const { service, access } = opts;

  // Upload bodies are streams the handlers consume themselves, whatever their type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  function cacheOf(name: string): CacheRow {
    const cache = service.registry.get(name);
    if (!cache) throw new NarhubError('CACHE_NOT_FOUND', `no cache named ${name}`);
    return cache;
  }

  function readable(request: Req, cache: CacheRow): CacheRow {
    access.requireRead(request, cache);
    return cache;
  }

  function declaredLength(request: FastifyRequest): number | undefined {
    const header = request.headers['content-length'];
    return header === undefined ? undefined : Number(header);
  }

  /** A small upload, decoded if the client compressed it. */
  async function smallBody(request: FastifyRequest): Promise<Buffer> {
    const raw = await readSmallBody(request.raw, opts.maxSmallFileSize, declaredLength(request));
    const encoding = request.headers['content-encoding'];
    if (encoding === undefined || encoding === 'identity') return raw;
    const compression = BODY_ENCODINGS[encoding];
    if (!compression) throw new NarhubError('BAD_REQUEST', `unsupported Content-Encoding ${JSON.stringify(encoding)}`);
    try {
      return await readSmallBody(Readable.from([raw]).pipe(createDecompressor(compression)), opts.maxSmallFileSize);
    } catch (err) {
      if (err instanceof NarhubError) throw err;
      throw new NarhubError('BAD_REQUEST', `body is not valid ${encoding}`);
    }
  }

  async function sendFile(
    reply: FastifyReply,
    _request: FastifyRequest,
    head: boolean,
    key: string,
    headers: Record<string, string>,
  ): Promise<FastifyReply> {
    if (head) {
      const stat = await service.store.stat(key);
      if (!stat) throw new NarhubError('NOT_FOUND', 'not found');
      return reply.headers({ ...headers, 'content-length': String(stat.size) }).send();
    }
    const read = await service.store.get(key, { signal: clientGoneSignal(reply) });
    if (!read) throw new NarhubError('NOT_FOUND', 'not found');
    return reply.headers({ ...headers, 'content-length': String(read.size) }).send(replyBody(read));
  }

  // nix-cache-info ---------------------------------------------------------------------------

  const cacheInfo = async (request: Req, reply: FastifyReply) => {
    const cache = readable(request, cacheOf(request.params.cache));
    return reply
      .type(CACHE_INFO_TYPE)
      .header('cache-control', cacheControl(cache, CACHE_INFO_CACHE_CONTROL))
      .send(cacheInfoBody(cache));
  };
  app.get('/:cache/nix-cache-info', cacheInfo);
  app.head('/:cache/nix-cache-info', cacheInfo);
  app.put('/:cache/nix-cache-info', async (request: Req, reply) => {
    access.requireWrite(request, cacheOf(request.params.cache));
    // Nix writes `StoreDir: …` when it thinks the file is missing; ours is generated. Accept and ignore.
    await smallBody(request);
    return reply.code(204).send();
  });

  // <hash>.narinfo and <hash>.ls -------------------------------------------------------------

  function splitTopLevel(file: string): { hashPart: string; kind: 'narinfo' | 'listing' } {
    const dot = file.lastIndexOf('.');
    const ext = file.slice(dot + 1);
    const hashPart = file.slice(0, dot);
    if (dot < 0 || (ext !== 'narinfo' && ext !== 'ls'))
      throw new NarhubError('NOT_FOUND', `no such resource ${file.slice(0, 100)}`);
    if (!isValidHashPart(hashPart))
      throw new NarhubError('STORE_PATH_INVALID', `invalid store path hash ${JSON.stringify(hashPart.slice(0, 100))}`);
    return { hashPart, kind: ext === 'narinfo' ? 'narinfo' : 'listing' };
  }

  const topLevelGet = (head: boolean) => async (request: Req<{ file: string }>, reply: FastifyReply) => {
    const cache = readable(request, cacheOf(request.params.cache));
    const { hashPart, kind } = splitTopLevel(request.params.file);
    if (kind === 'narinfo') {
      const text = narinfoMissedByFastPath(request.raw, cache, hashPart) ? undefined : service.narinfo(cache, hashPart);
      if (text === undefined) throw new NarhubError('NOT_FOUND', `no path ${hashPart} in cache ${cache.name}`);
      reply.type(NARINFO_TYPE).header('cache-control', cacheControl(cache, NARINFO_CACHE_CONTROL));
      return head ? reply.header('content-length', Buffer.byteLength(text)).send() : reply.send(text);
    }
    return sendSmallFile(request, reply, head, cache, 'listing', hashPart);
  };
  app.get('/:cache/:file', topLevelGet(false));
  app.head('/:cache/:file', topLevelGet(true));
  app.put('/:cache/:file', async (request: Req<{ file: string }>, reply) => {
    const cache = cacheOf(request.params.cache);
    const { hashPart, kind } = splitTopLevel(request.params.file);
    access.requireWrite(request, cache);
    if (kind === 'narinfo') {
      const text = (await smallBody(request)).toString('utf8');
      const result = await service.commitNarInfo(cache, hashPart, text);
      request.log.info(
        { cache: cache.name, hashPart, created: result.created },
        result.created ? 'path committed' : 'narinfo re-put',
      );
      return reply.code(204).send();
    }
    return putSmallFile(request, reply, cache, 'listing', hashPart);
  });

  // nar/<file> -------------------------------------------------------------------------------

  const narGet = (head: boolean) => async (request: Req<{ file: string }>, reply: FastifyReply) => {
    const cache = readable(request, cacheOf(request.params.cache));
    const nar = service.validNar(cache, request.params.file);
    if (!nar) throw new NarhubError('NOT_FOUND', `no NAR ${request.params.file.slice(0, 100)} in cache ${cache.name}`);
    // GET may be sent to storage (read access is checked above); HEAD stays ours, so Nix's
    // upload-skip check keeps asking narhub.
    const location = head ? undefined : await service.narRedirect(cache, nar);
    if (location !== undefined)
      return reply.code(302).header('location', location).header('cache-control', 'no-store').send();
    reply
      .header('accept-ranges', 'bytes')
      .type('application/x-nix-nar')
      .header('cache-control', cacheControl(cache, NAR_CACHE_CONTROL));
    const range = parseRange(request.headers.range, nar.fileSize);
    if (range === 'unsatisfiable') {
      reply.header('content-range', `bytes */${nar.fileSize}`);
      throw new NarhubError(
        'RANGE_NOT_SATISFIABLE',
        `range ${request.headers.range} is outside the file of ${nar.fileSize} bytes`,
      );
    }
    if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${nar.fileSize}`);
    const length = range ? range.end - range.start + 1 : nar.fileSize;
    if (head) return reply.header('content-length', length).send();
    const read = await service.store.get(nar.storageKey, {
      signal: clientGoneSignal(reply),
      ...(range ? { range } : {}),
    });
    if (!read) {
      // The database says valid but the bytes are gone: never answer with a truncated 200.
      request.log.error({ cache: cache.name, key: nar.storageKey }, 'valid NAR missing from storage');
      throw new NarhubError('NOT_FOUND', `NAR ${nar.fileName} is missing from storage`);
    }
    return reply.header('content-length', read.size).send(replyBody(read));
  };
  app.get('/:cache/nar/:file', narGet(false));
  app.head('/:cache/nar/:file', narGet(true));
  app.put('/:cache/nar/:file', async (request: Req<{ file: string }>, reply) => {
    const cache = cacheOf(request.params.cache);
    access.requireWrite(request, cache);
    const nar = await service.ingestNar(cache, request.params.file, request.raw, {
      signal: clientGoneSignal(reply),
      contentLength: declaredLength(request),
      maxSize: opts.maxNarSize,
    });
    request.log.info(
      { cache: cache.name, file: nar.fileName, narSize: nar.narSize, compression: nar.compression },
      'NAR received',
    );
    return reply.code(204).send();
  });

  // Small files: log/, realisations/, build-trace-v2/, debuginfo/ ---------------------------

  async function sendSmallFile(
    request: Req,
    reply: FastifyReply,
    head: boolean,
    cache: CacheRow,
    kind: FileKind,
    name: string,
  ) {
    const row = service.files.get(kind, cache, name);
    if (!row) throw new NarhubError('NOT_FOUND', `no ${kind} ${name.slice(0, 120)} in cache ${cache.name}`);
    const headers: Record<string, string> = {
      'content-type': row.contentType,
      'cache-control': cacheControl(cache, 'max-age=3600'),
    };
    if (row.contentEncoding) headers['content-encoding'] = row.contentEncoding;
    return sendFile(reply, request, head, row.storageKey, headers);
  }

  async function putSmallFile(request: Req, reply: FastifyReply, cache: CacheRow, kind: FileKind, name: string) {
    access.requireWrite(request, cache);
    const body = await readSmallBody(request.raw, opts.maxSmallFileSize, declaredLength(request));
    await service.files.put(kind, cache, name, {
      body,
      contentType: request.headers['content-type'],
      contentEncoding: request.headers['content-encoding'],
    });
    return reply.code(204).send();
  }

  function stripSuffix(name: string, suffix: string): string {
    if (!name.endsWith(suffix)) throw new NarhubError('NOT_FOUND', `no such resource ${name.slice(0, 100)}`);
    return name.slice(0, -suffix.length);
  }

  const smallFileRoutes: { path: string; kind: FileKind; name: (p: Record<string, string>) => string }[] = [
    { path: '/:cache/log/:drv', kind: 'log', name: (p) => p.drv! },
    { path: '/:cache/realisations/:id', kind: 'realisation', name: (p) => stripSuffix(p.id!, '.doi') },
    {
      path: '/:cache/build-trace-v2/:drv/:out',
      kind: 'build-trace',
      name: (p) => `${p.drv}/${stripSuffix(p.out!, '.doi')}`,
    },
    { path: '/:cache/debuginfo/:id', kind: 'debuginfo', name: (p) => stripSuffix(p.id!, '.debug') },
  ];
  for (const route of smallFileRoutes) {
    const get = (head: boolean) => async (request: Req, reply: FastifyReply) => {
      const cache = readable(request, cacheOf(request.params.cache));
      return sendSmallFile(
        request,
        reply,
        head,
        cache,
        route.kind,
        route.name(request.params as Record<string, string>),
      );
    };
    app.get(route.path, get(false));
    app.head(route.path, get(true));
    app.put(route.path, async (request: Req, reply) => {
      const cache = cacheOf(request.params.cache);
      return putSmallFile(request, reply, cache, route.kind, route.name(request.params as Record<string, string>));
    });
  }
}
