import { Type, type FastifyPluginAsyncTypebox, type Static } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { NarhubError } from '../../errors.js';
import { isValidHashPart } from '../../nix/store-path.js';
import { compressionOfEncoding } from '../../io/compression.js';
import type { CacheRow } from '../../db/caches-repo.js';
import type { FileKind } from '../../db/files-repo.js';
import type { CacheService } from '../../cache/cache-service.js';
import { LOG_CONTENT_TYPE } from '../../cache/cache-files.js';
import type { UpstreamNar } from '../../cache/upstream/pull-through.js';
import type { Access } from '../access.js';
import type { TypeboxApp } from '../typebox-app.js';
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
import { refuseUnreadBody } from '../unread-body.js';
import { acceptsStoredEncoding } from '../stored-encoding.js';

export interface BinaryCacheRouteOptions {
  service: CacheService;
  access: Access;
  maxNarSize: number;
  maxSmallFileSize: number;
}

// Path parameters. Names and files are only typed here: the registry decides which caches exist
// (an unknown name answers like a private one), the handlers which files.
const Segment = Type.String({ maxLength: 500 });
const CacheParams = Type.Object({ cache: Segment });
const FileParams = Type.Object({ cache: Segment, file: Segment });
const LogParams = Type.Object({ cache: Segment, drv: Segment });
const IdParams = Type.Object({ cache: Segment, id: Segment });
const TraceParams = Type.Object({ cache: Segment, drv: Segment, out: Segment });
const NarGetHeaders = Type.Object({ range: Type.Optional(Type.String({ maxLength: 200 })) });

type FileRequest = FastifyRequest<{ Params: Static<typeof FileParams> }>;

const NAR_CACHE_CONTROL = 'max-age=31536000, immutable';

/**
 * The Nix binary-cache protocol, per cache, at `/<cache>/…`. Routes only validate, call the
 * cache domain and set headers; anything not listed here is a real 404. Reads (GET, HEAD) live
 * in one encapsulated context whose `preHandler` checks read rights, writes (PUT) in another
 * that checks write rights; either sets `request.cache`.
 */
export const binaryCacheRoutes: FastifyPluginAsyncTypebox<BinaryCacheRouteOptions> = async (app, opts) => {
  const { service, access } = opts;

  // Upload bodies are streams the handlers consume themselves, whatever their type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  function declaredLength(request: FastifyRequest): number | undefined {
    const header = request.headers['content-length'];
    return header === undefined ? undefined : Number(header);
  }

  /** A small upload, decoded if the client compressed it. */
  async function smallBody(request: FastifyRequest, reply: FastifyReply): Promise<Buffer> {
    const raw = await readSmallBody(request.raw, opts.maxSmallFileSize, declaredLength(request));
    // Nix 2.32+ narinfo-compression.
    return decoded(raw, request.headers['content-encoding'], clientGoneSignal(reply));
  }

  /** `raw` decoded as its Content-Encoding says (at most maxSmallFileSize); 400 if it is not that. */
  async function decoded(raw: Buffer, encoding: string | undefined, signal: AbortSignal): Promise<Buffer> {
    const compression = compressionOfEncoding(encoding);
    if (compression === 'none') return raw;
    try {
      return await service.decodeSmallFile(raw, compression, opts.maxSmallFileSize, signal);
    } catch (err) {
      // Past the limit is 413, no turn among the xz decodes 503; anything else the decoder met is
      // a body that is not `encoding`.
      if (err instanceof NarhubError && (err.code === 'BODY_TOO_LARGE' || err.code === 'UNAVAILABLE')) throw err;
      throw new NarhubError('BAD_REQUEST', `body is not valid ${encoding}`);
    }
  }

  async function sendFile(
    reply: FastifyReply,
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

  /**
   * A NAR from an upstream. While it streams, its end is held back until narhub verified it, and
   * a failure destroys the response: the client sees a broken transfer, never a complete-looking
   * corrupt NAR. No Accept-Ranges, so no client resumes into a download that may still fail.
   */
  function sendUpstreamNar(reply: FastifyReply, cache: CacheRow, nar: UpstreamNar): FastifyReply {
    reply.type('application/x-nix-nar').header('cache-control', cacheControl(cache, NAR_CACHE_CONTROL));
    if (nar.kind === 'stored') return reply.header('content-length', nar.read.size).send(replyBody(nar.read));
    if (nar.size !== undefined) reply.header('content-length', nar.size);
    return reply.send(nar.stream);
  }

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

  async function sendSmallFile(reply: FastifyReply, head: boolean, cache: CacheRow, kind: FileKind, name: string) {
    const row = service.files.get(kind, cache, name);
    if (!row) throw new NarhubError('NOT_FOUND', `no ${kind} ${name.slice(0, 120)} in cache ${cache.name}`);
    const headers: Record<string, string> = {
      // A log is text whatever type it was uploaded with (older narhubs kept the uploader's, text/html
      // included), and no browser may sniff any stored file into something it runs.
      'content-type': kind === 'log' ? LOG_CONTENT_TYPE : row.contentType,
      'x-content-type-options': 'nosniff',
      'cache-control': cacheControl(cache, 'max-age=3600'),
    };
    if (row.contentEncoding) {
      headers.vary = 'Accept-Encoding';
      if (!acceptsStoredEncoding(reply.request.headers, row.contentEncoding)) {
        return sendDecoded(reply, head, row.storageKey, row.contentEncoding, headers);
      }
      headers['content-encoding'] = row.contentEncoding;
    }
    return sendFile(reply, head, row.storageKey, headers);
  }

  /** A small file decoded from the coding it was stored in, for a client that does not take that coding. */
  async function sendDecoded(
    reply: FastifyReply,
    head: boolean,
    key: string,
    encoding: string,
    headers: Record<string, string>,
  ): Promise<FastifyReply> {
    const read = await service.store.get(key, { signal: clientGoneSignal(reply) });
    if (!read) throw new NarhubError('NOT_FOUND', 'not found');
    const raw =
      read.bytes === undefined
        ? await readSmallBody(read.stream, opts.maxSmallFileSize)
        : Buffer.from(read.bytes.buffer, read.bytes.byteOffset, read.bytes.byteLength);
    const body = await decoded(raw, encoding, clientGoneSignal(reply));
    reply.headers({ ...headers, 'content-length': String(body.length) });
    return head ? reply.send() : reply.send(body);
  }

  async function putSmallFile(request: FastifyRequest, reply: FastifyReply, kind: FileKind, name: string) {
    const body = await readSmallBody(request.raw, opts.maxSmallFileSize, declaredLength(request));
    // Stored as sent, and served with its Content-Encoding: it must be what that says.
    await decoded(body, request.headers['content-encoding'], clientGoneSignal(reply));
    await service.files.put(kind, request.cache, name, {
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

  // Small files: log/, realisations/, build-trace-v2/, debuginfo/, each with its name's rule.
  const smallFiles = {
    log: { path: '/:cache/log/:drv', params: LogParams, name: (p: Static<typeof LogParams>) => p.drv },
    realisation: {
      path: '/:cache/realisations/:id',
      params: IdParams,
      name: (p: Static<typeof IdParams>) => stripSuffix(p.id, '.doi'),
    },
    'build-trace': {
      path: '/:cache/build-trace-v2/:drv/:out',
      params: TraceParams,
      name: (p: Static<typeof TraceParams>) => `${p.drv}/${stripSuffix(p.out, '.doi')}`,
    },
    debuginfo: {
      path: '/:cache/debuginfo/:id',
      params: IdParams,
      name: (p: Static<typeof IdParams>) => stripSuffix(p.id, '.debug'),
    },
  } as const;
  type SmallFileKind = keyof typeof smallFiles;
  const smallFileKinds = Object.keys(smallFiles) as SmallFileKind[];
  const smallFileName = (kind: SmallFileKind, params: unknown): string =>
    (smallFiles[kind].name as (p: unknown) => string)(params);

  // Reads ------------------------------------------------------------------------------------

  await app.register(async (read: TypeboxApp) => {
    read.addHook('preHandler', access.cacheHook('read'));

    for (const method of ['GET', 'HEAD'] as const) {
      const head = method === 'HEAD';

      read.route({
        method,
        url: '/:cache/nix-cache-info',
        schema: { params: CacheParams },
        handler: async (request, reply) =>
          reply
            .type(CACHE_INFO_TYPE)
            .header('cache-control', cacheControl(request.cache, CACHE_INFO_CACHE_CONTROL))
            .send(cacheInfoBody(request.cache)),
      });

      // <hash>.narinfo and <hash>.ls
      read.route({
        method,
        url: '/:cache/:file',
        schema: { params: FileParams },
        handler: async (request: FileRequest, reply) => {
          const { cache } = request;
          const { hashPart, kind } = splitTopLevel(request.params.file);
          if (kind === 'listing') return sendSmallFile(reply, head, cache, 'listing', hashPart);
          const missed = narinfoMissedByFastPath(request.raw, cache, hashPart);
          // A miss asks the cache's upstreams, if it has any (bounded in time; never an error).
          const text =
            (missed ? undefined : service.narinfo(cache, hashPart)) ??
            (await service.pullThrough.narinfo(cache, hashPart));
          if (text === undefined) throw new NarhubError('NOT_FOUND', `no path ${hashPart} in cache ${cache.name}`);
          reply.type(NARINFO_TYPE).header('cache-control', cacheControl(cache, NARINFO_CACHE_CONTROL));
          return head ? reply.header('content-length', Buffer.byteLength(text)).send() : reply.send(text);
        },
      });

      read.route({
        method,
        url: '/:cache/nar/:file',
        schema: { params: FileParams, headers: NarGetHeaders },
        handler: async (request, reply) => {
          const { cache } = request;
          const nar = service.validNar(cache, request.params.file);
          if (!nar) {
            // An upstream's NAR this cache offered: streamed as it arrives. HEAD stays strict, so
            // an uploader never skips a NAR narhub does not hold verified.
            const upstream = head ? undefined : await service.pullThrough.nar(cache, request.params.file);
            if (upstream !== undefined) return sendUpstreamNar(reply, cache, upstream);
            throw new NarhubError('NOT_FOUND', `no NAR ${request.params.file.slice(0, 100)} in cache ${cache.name}`);
          }
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
          const stored = await service.store.get(nar.storageKey, {
            signal: clientGoneSignal(reply),
            ...(range ? { range } : {}),
          });
          if (!stored) {
            // The database says valid but the bytes are gone: never answer with a truncated 200.
            request.log.error({ cache: cache.name, key: nar.storageKey }, 'valid NAR missing from storage');
            throw new NarhubError('NOT_FOUND', `NAR ${nar.fileName} is missing from storage`);
          }
          return reply.header('content-length', stored.size).send(replyBody(stored));
        },
      });

      for (const kind of smallFileKinds) {
        read.route({
          method,
          url: smallFiles[kind].path,
          schema: { params: smallFiles[kind].params },
          handler: async (request, reply) =>
            sendSmallFile(reply, head, request.cache, kind, smallFileName(kind, request.params)),
        });
      }
    }
  });

  // Writes -----------------------------------------------------------------------------------

  await app.register(async (write: TypeboxApp) => {
    write.addHook('preHandler', access.cacheHook('write'));

    write.put('/:cache/nix-cache-info', { schema: { params: CacheParams } }, async (request, reply) => {
      // Nix writes `StoreDir: …` when it thinks the file is missing; ours is generated. Accept and ignore.
      await smallBody(request, reply);
      return reply.code(204).send();
    });

    write.put('/:cache/:file', { schema: { params: FileParams } }, async (request, reply) => {
      const { cache } = request;
      const { hashPart, kind } = splitTopLevel(request.params.file);
      if (kind === 'listing') return putSmallFile(request, reply, 'listing', hashPart);
      const text = (await smallBody(request, reply)).toString('utf8');
      const result = await service.commitNarInfo(cache, hashPart, text);
      request.log.info(
        { cache: cache.name, hashPart, created: result.created },
        result.created ? 'path committed' : 'narinfo re-put',
      );
      return reply.code(204).send();
    });

    write.put('/:cache/nar/:file', { schema: { params: FileParams } }, async (request, reply) => {
      const { cache } = request;
      // A refusal mid-body must reach the client as an answer, not as a reset connection.
      return refuseUnreadBody(request, async (body) => {
        const nar = await service.ingestNar(cache, request.params.file, body, {
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
    });

    for (const kind of smallFileKinds) {
      write.put(smallFiles[kind].path, { schema: { params: smallFiles[kind].params } }, async (request, reply) =>
        putSmallFile(request, reply, kind, smallFileName(kind, request.params)),
      );
    }
  });
};
