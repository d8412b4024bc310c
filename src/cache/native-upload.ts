import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NarhubError, isNarhubError } from '../errors.js';
import { formatHash, hashesEqual, parseHash, sha256Hash, sha256Of } from '../nix/hash.js';
import type { NarInfo } from '../nix/narinfo.js';
import { formatListing } from '../nix/nar/listing.js';
import { NarContentHasher, type ContentHashResult, type ContentHashSpec } from '../nix/nar/content-hasher.js';
import { NarParser } from '../nix/nar/nar-parser.js';
import { createByteLimit } from '../io/byte-limit.js';
import { decompressSmall, sniffCompression, zstdCompressSmall } from '../io/compression.js';
import type { KeyedLock } from '../io/keyed-lock.js';
import { createNarPass } from '../io/nar-pass.js';
import { readHead } from '../io/read-head.js';
import { readFirstLine } from '../io/read-line.js';
import { readSmallBody } from '../io/read-small-body.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { NarRow, NarsRepo } from '../db/nars-repo.js';
import type { PathsRepo } from '../db/paths-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { narHashFileName } from './nar-file-name.js';
import { narStorageKey, putSmallNar, storeGeneratedListing } from './nar-ingest.js';
import type { CommitResult, PathCommit } from './narinfo-commit.js';
import type { NarSync } from './nar-sync.js';
import { mostTelling, rejections } from './upload-failure.js';
import { type BodyCompression, MAX_METADATA_LINE, parseUploadMetadata } from './upload-metadata.js';
import { corruptInput, putVerifiedNarFile } from './verified-nar-file.js';

/** zstd settings for files narhub compresses itself (native uploads, recompression). */
export interface ZstdOptions {
  level: number;
  /** zstd worker threads: > 0 keeps compression off the event loop. */
  workers: number;
}

/**
 * NARs up to this size are received whole and handled on the event loop: validating, hashing
 * and compressing a few KiB takes microseconds, far less than handing them to a codec thread
 * and streaming them to storage (a build hub's outputs and `.drv`s are mostly this small).
 */
export const SMALL_NAR_SIZE = 64 * 1024;

export interface NativeUploadOptions {
  signal?: AbortSignal | undefined;
  /** Largest NAR accepted. */
  maxSize: number;
}

export interface NativeUploadResult extends CommitResult {
  info: NarInfo;
  nar: NarRow;
  /** False when narhub already held a verified copy of this NAR and ignored the body. */
  stored: boolean;
}

/**
 * One native upload on its way in: the NAR still to be read from `body` (raw, or the client's
 * zstd frame: `compression`), stored as `fileName`; `contentHash`, the hash its CA needs beyond
 * the NarHash, computed in the same pass.
 */
interface Upload {
  cache: CacheRow;
  fileName: string;
  info: NarInfo;
  compression: BodyCompression;
  body: Readable;
  options: NativeUploadOptions;
  contentHash: ContentHashSpec | undefined;
}

/** A NAR received and recorded, with the content-address hash computed on the way (if asked). */
interface Received {
  nar: NarRow;
  contentHash: ContentHashResult | undefined;
}

/**
 * The most a client's zstd frame of a NAR of `narSize` bytes may take: zstd's own bound for
 * `narSize` bytes of input (ZSTD_COMPRESSBOUND in zstd.h: incompressible data stored in raw
 * blocks), and 4 KiB of room for frame headers and a skippable frame. Anything longer is not
 * such a frame, and is refused before it is all read.
 */
function zstdFrameBound(narSize: number): number {
  const SMALL = 128 * 1024;
  return narSize + Math.floor(narSize / 256) + (narSize < SMALL ? Math.floor((SMALL - narSize) / 2048) : 0) + 4096;
}

/** Where a received NAR goes. */
interface Receiver {
  store: BlobStore;
  nars: NarsRepo;
  narSync: NarSync;
  zstd: ZstdOptions;
}

/**
 * narhub's own upload: one request per path, a metadata line then the raw NAR. In one pass on a
 * codec thread (`io/nar-pass.ts`) the NAR is validated and hashed (NarHash, NarSize) and
 * compressed with zstd (by zstd's own threads, which that thread drives), and the compressed
 * bytes are hashed and counted (FileHash, FileSize); the event loop only copies the NAR to the
 * thread and the compressed bytes to the blob store. The file appears under its name only once
 * the NAR verified (`beforeCommit`); then the path is committed by the very function a narinfo
 * PUT goes through. A NAR of at most SMALL_NAR_SIZE bytes gets the same checks in memory, on
 * the event loop, and is stored only once it verified.
 *
 * On a failure the rest of the body is drained rather than the connection dropped, so the
 * client always reads why (a dropped connection would look like a transient error and be retried).
 */
export function createNativeUpload(
  deps: Receiver & {
    paths: PathsRepo;
    commit: PathCommit;
    lock: KeyedLock;
    /**
     * For a cache with upstreams: brings references (basenames) from them, or fails with
     * REFERENCE_MISSING. A path whose references are missing is then received first and its
     * references fetched before its commit (a pusher skips what the upstreams sign).
     */
    referencesFromUpstreams?: (cache: CacheRow) => ((refs: string[]) => Promise<void>) | undefined;
  },
) {
  const { nars, paths, commit, lock } = deps;

  return async function uploadPath(
    cache: CacheRow,
    hashPart: string,
    body: Readable,
    options: NativeUploadOptions,
  ): Promise<NativeUploadResult> {
    let info: NarInfo;
    let contentHash: ContentHashSpec | undefined;
    let compression: BodyCompression;
    let release = (): void => undefined;
    const fromUpstreams = deps.referencesFromUpstreams?.(cache);
    let fetchReferences: ((refs: string[]) => Promise<void>) | undefined;
    try {
      ({ info, body: compression } = parseUploadMetadata(await readFirstLine(body, MAX_METADATA_LINE)));
      if (info.narSize > options.maxSize) {
        throw new NarhubError(
          'BODY_TOO_LARGE',
          `NAR of ${info.narSize} bytes exceeds the limit of ${options.maxSize} bytes`,
        );
      }
      try {
        contentHash = commit.precheck(cache, hashPart, info)?.needs;
      } catch (err) {
        if (!isNarhubError(err) || err.code !== 'REFERENCE_MISSING' || fromUpstreams === undefined) throw err;
        fetchReferences = fromUpstreams;
        contentHash = commit.precheck(cache, hashPart, info, { referencesLater: true })?.needs;
      }
      // From here to the commit, GC leaves the path and its references alone.
      release = commit.hold(cache, hashPart, info);
    } catch (err) {
      drain(body);
      throw err;
    }
    const fileName = narHashFileName(info.narHash);
    info.url = `nar/${fileName}`;

    return lock.run(`${cache.id}/${fileName}`, async () => {
      try {
        return await receiveAndCommit();
      } finally {
        release();
      }
    });

    async function receiveAndCommit(): Promise<NativeUploadResult> {
      let nar = nars.get(cache.id, fileName);
      let computed: ContentHashResult | undefined;
      let stored = false;
      if (paths.get(cache.id, hashPart) || nar?.state === 'valid') {
        // Already committed (the commit may still add signatures or refuse a change), or a
        // verified copy of this very NAR is here: the body adds nothing.
        drain(body);
      } else {
        const upload: Upload = { cache, fileName, info, compression, body, options, contentHash };
        let received: Received;
        if (info.narSize <= SMALL_NAR_SIZE) received = await receiveSmall(deps, upload);
        else received = compression === 'zstd' ? await receiveFrame(deps, upload) : await receive(deps, upload);
        nar = received.nar;
        computed = received.contentHash;
        stored = true;
      }
      if (fetchReferences !== undefined) {
        const self = info.storePath.slice(info.storePath.lastIndexOf('/') + 1);
        await fetchReferences(info.references.filter((r) => r !== self));
      }
      const withFile: NarInfo = nar ? { ...info, fileHash: nar.fileHash, fileSize: nar.fileSize } : info;
      const result = await commit.commitInfo(cache, hashPart, withFile, { contentHash: computed });
      const final = nars.getById(result.narId)!;
      return { ...result, info: withFile, nar: final, stored };
    }
  };
}

/**
 * A NAR of at most SMALL_NAR_SIZE bytes: the same checks as `receive` and `receiveFrame`, in
 * memory. A client's zstd frame is decoded and kept as it is; a raw NAR is compressed here.
 */
async function receiveSmall(to: Receiver, upload: Upload): Promise<Received> {
  const { cache, fileName, info, compression, body, options } = upload;
  const frame = compression === 'zstd';
  let received: Buffer;
  try {
    // Refused as soon as it runs past what such a NAR (or frame of it) can take.
    received = await readSmallBody(body, frame ? zstdFrameBound(info.narSize) : info.narSize);
  } catch (err) {
    if (isNarhubError(err) && err.code === 'BODY_TOO_LARGE') throw tooLong(info.narSize, frame);
    if (isNarhubError(err))
      throw new NarhubError('BAD_REQUEST', 'upload aborted before the NAR was complete', { cause: err });
    throw err;
  }
  const narBytes = frame ? decodeSmallFrame(received, info.narSize) : received;
  options.signal?.throwIfAborted();
  const parser = new NarParser({ listing: true });
  parser.update(narBytes);
  const nar = parser.finish();
  checkNar(info, nar.narHash, nar.narSize);
  let contentHash: ContentHashResult | undefined;
  if (upload.contentHash !== undefined) {
    const hasher = new NarContentHasher(upload.contentHash);
    hasher.update(narBytes);
    contentHash = hasher.finish();
  }
  const file = frame ? received : zstdCompressSmall(narBytes, to.zstd.level);
  const listing = nar.listing === undefined ? undefined : formatListing(nar.listing);
  const listingKey = await putSmallNar(to, cache, fileName, file, listing, options.signal);
  const fileHash = formatHash(sha256Of(file), 'nix32');
  const row = recordPending(to.nars, cache, fileName, { fileHash, fileSize: file.length, ...nar, listingKey });
  return { nar: row, contentHash };
}

/** A small zstd frame, decoded: refused unless it is zstd and decodes to at most `narSize` bytes. */
function decodeSmallFrame(frame: Buffer, narSize: number): Buffer {
  checkFrame(frame);
  let decoded: Buffer | undefined;
  try {
    decoded = decompressSmall(frame, 'zstd', narSize);
  } catch (err) {
    throw corruptInput(err, 'zstd');
  }
  if (decoded === undefined) throw tooLong(narSize, false);
  return decoded;
}

/** The body the metadata calls a zstd frame must start like one (a frame or a skippable frame). */
function checkFrame(head: Buffer): void {
  if (head.length === 0) throw new NarhubError('NAR_INVALID', 'empty NAR upload');
  if (sniffCompression(head) !== 'zstd')
    throw new NarhubError(
      'COMPRESSION_MISMATCH',
      'the metadata says compression zstd, but the body is not a zstd frame',
    );
}

/**
 * A NAR the client compressed (metadata `compression: zstd`): its frame is stored exactly as it
 * comes, in the same one pass a Nix NAR PUT gets (`verified-nar-file.ts`: the frame hashed and
 * counted, decoded on one codec thread, the NAR validated and hashed on another), and takes its
 * name only once it decoded to the NAR the metadata announced. narhub compresses nothing: the
 * server's CPU per GB is decoding and hashing.
 */
async function receiveFrame(to: Receiver, upload: Upload): Promise<Received> {
  const { cache, fileName, info, body, options } = upload;
  // `pipe`, not pipeline: a failure must not destroy the request (and with it the socket).
  const gate = new PassThrough();
  const onAbort = () => gate.destroy(new NarhubError('BAD_REQUEST', 'upload aborted before the NAR was complete'));
  body.once('aborted', onAbort).once('error', onAbort);
  body.pipe(gate);
  try {
    const { head, stream } = await readHead(gate, 16);
    checkFrame(head);
    const { nar, fileHash, fileSize } = await putVerifiedNarFile(
      to.store,
      narStorageKey(cache.name, fileName),
      stream,
      {
        compression: 'zstd',
        maxFileSize: zstdFrameBound(info.narSize),
        // Decoding past NarSize stops at once: a small frame may decode to any size.
        maxNarSize: info.narSize,
        signal: options.signal,
        contentHash: upload.contentHash,
        check: (file) => checkNar(info, file.nar.narHash, file.nar.narSize),
        pickFailure: (results) => pickFailure(results, info.narSize, true),
      },
    );
    const listingKey =
      nar.listing === undefined ? null : await storeGeneratedListing(to.store, cache.name, fileName, nar.listing);
    to.narSync.durable(cache.id, fileName);
    const row = recordPending(to.nars, cache, fileName, {
      fileHash,
      fileSize,
      narHash: nar.narHash,
      narSize: nar.narSize,
      listingKey,
    });
    return { nar: row, contentHash: nar.contentHash };
  } catch (err) {
    body.unpipe(gate);
    drain(body);
    throw err;
  } finally {
    body.off('aborted', onAbort).off('error', onAbort);
  }
}

/**
 * A larger NAR, in one pass: byte limit (NarSize) → a codec thread that validates, hashes and
 * compresses it → the blob store, which names the file only once the NAR verified.
 */
async function receive(to: Receiver, upload: Upload): Promise<Received> {
  const { cache, fileName, info, body, options } = upload;
  const key = narStorageKey(cache.name, fileName);
  // `pipe`, not pipeline: a failure must not destroy the request (and with it the socket).
  // No buffer between them: the codec stream holds up to four 1 MiB slabs already.
  const limit = createByteLimit(info.narSize);
  const onAbort = () => limit.destroy(new NarhubError('BAD_REQUEST', 'upload aborted before the NAR was complete'));
  body.once('aborted', onAbort).once('error', onAbort);
  body.pipe(limit);

  const { level, workers } = to.zstd;
  const { pass } = createNarPass({
    listing: true,
    compress: { level, workers },
    ...(upload.contentHash ? { contentHash: upload.contentHash } : {}),
  });
  const validated = pass.result();

  // The compressed bytes go straight to storage; their hash and length come from the thread.
  const stored = to.store.put(key, pass, {
    signal: options.signal,
    contentType: 'application/x-nix-nar',
    beforeCommit: async () => {
      const nar = await validated;
      checkNar(info, nar.narHash, nar.narSize);
    },
  });
  stored.catch(() => undefined);

  const received = pipeline(limit, pass, options.signal ? { signal: options.signal } : {});

  const results = await Promise.allSettled([received, validated, stored]);
  body.off('aborted', onAbort).off('error', onAbort);
  const failure = pickFailure(results, info.narSize, false);
  if (failure !== undefined) {
    body.unpipe(limit);
    drain(body);
    throw failure;
  }
  const nar = await validated;
  const listingKey =
    nar.listing === undefined ? null : await storeGeneratedListing(to.store, cache.name, fileName, nar.listing);
  const fileHash = formatHash(sha256Hash(pass.digest()), 'nix32');
  to.narSync.durable(cache.id, fileName);
  const row = recordPending(to.nars, cache, fileName, {
    fileHash,
    fileSize: pass.bytes,
    narHash: nar.narHash,
    narSize: nar.narSize,
    listingKey,
  });
  return { nar: row, contentHash: nar.contentHash };
}

/** Records a zstd file narhub wrote as pending, until the commit makes it valid. */
function recordPending(
  nars: NarsRepo,
  cache: CacheRow,
  fileName: string,
  file: { fileHash: string; fileSize: number; narHash: string; narSize: number; listingKey: string | null },
): NarRow {
  nars.putPending({
    cacheId: cache.id,
    fileName,
    storageKey: narStorageKey(cache.name, fileName),
    compression: 'zstd',
    fileHash: file.fileHash,
    fileSize: file.fileSize,
    narHash: file.narHash,
    narSize: file.narSize,
    listingKey: file.listingKey,
  });
  return nars.get(cache.id, fileName)!;
}

/** The NAR received must be the one the metadata announced. */
function checkNar(info: NarInfo, narHash: string, narSize: number): void {
  if (narSize !== info.narSize) {
    throw new NarhubError('NAR_SIZE_MISMATCH', `NarSize ${info.narSize} does not match the uploaded NAR (${narSize})`);
  }
  if (!hashesEqual(parseHash(narHash), parseHash(info.narHash))) {
    throw new NarhubError('NAR_HASH_MISMATCH', `NarHash ${info.narHash} does not match the uploaded NAR (${narHash})`);
  }
}

/** Reads and discards the rest of a body, so the answer reaches the client on a live connection. */
function drain(body: Readable): void {
  if (body.destroyed || body.readableEnded) return;
  body.on('error', () => undefined);
  body.resume();
}

/**
 * The most telling error (mostTelling); running past NarSize (or past what a frame of such a NAR
 * can take) is the metadata's fault.
 */
function pickFailure(results: PromiseSettledResult<unknown>[], narSize: number, frame: boolean): unknown {
  const errors = rejections(results);
  if (errors.length === 0) return undefined;
  const tooLarge = errors.find((e) => isNarhubError(e) && e.code === 'BODY_TOO_LARGE');
  // The frame's own limit says "body exceeds"; the decoded NAR's, "the NAR is larger".
  if (tooLarge) return tooLong(narSize, frame && /^body exceeds/.test((tooLarge as Error).message));
  return mostTelling(errors, 'NAR');
}

function tooLong(narSize: number, frame: boolean): NarhubError {
  return new NarhubError(
    'NAR_SIZE_MISMATCH',
    frame
      ? `the zstd frame is longer than any frame of a NAR of its NarSize ${narSize} can be`
      : `the NAR is longer than its NarSize ${narSize}`,
  );
}
