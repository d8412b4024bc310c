import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NarhubError, isNarhubError, type ErrorCode } from '../errors.js';
import { formatHash, hashesEqual, parseHash, sha256Hash, sha256Of } from '../nix/hash.js';
import type { NarInfo } from '../nix/narinfo.js';
import { isDerivationPath, parseStorePath } from '../nix/store-path.js';
import { createByteLimit } from '../io/byte-limit.js';
import { zstdCompressSmall } from '../io/compression.js';
import { createNarPass } from '../io/nar-pass.js';
import { readFirstLine } from '../io/read-line.js';
import { readSmallBody } from '../io/read-small-body.js';
import { formatListing } from '../nix/nar/listing.js';
import { NarParser } from '../nix/nar/nar-parser.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { NarRow, NarsRepo } from '../db/nars-repo.js';
import type { PathsRepo } from '../db/paths-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { KeyedLock } from '../io/keyed-lock.js';
import { narStorageKey, storeGeneratedListing } from './nar-ingest.js';
import type { CommitResult, PathCommit } from './narinfo-commit.js';

/** zstd settings for files narhub compresses itself (native uploads, recompression). */
export interface ZstdOptions {
  level: number;
  /** zstd worker threads: > 0 keeps compression off the event loop. */
  workers: number;
}

/** The metadata line may not be longer than this (thousands of references fit easily). */
export const MAX_METADATA_LINE = 1024 * 1024;

/**
 * NARs up to this size are received whole and handled on the event loop: validating, hashing
 * and compressing a few KiB takes microseconds, far less than handing them to a codec thread
 * and streaming them to storage (a build hub's outputs and `.drv`s are mostly this small).
 */
export const SMALL_NAR_SIZE = 64 * 1024;

const METADATA_FIELDS = new Set(['storePath', 'narHash', 'narSize', 'references', 'deriver', 'ca', 'sigs']);

/**
 * The name of a NAR file narhub compressed itself: `<nix32 sha256 of the uncompressed NAR>.nar.zst`.
 * Nix names files by the hash of the *file*, which is only known once compression has finished,
 * and a blob cannot be renamed; any name works for a narinfo `URL:`, and naming by NarHash lets
 * the name be checked (in `beforeCommit`) before the file appears under it. The same NAR gets
 * the same name whether it came as a native upload or from recompression, so they share a file.
 */
export function narHashFileName(narHash: string): string {
  const hash = parseHash(narHash);
  if (hash.algo !== 'sha256') throw new NarhubError('HASH_INVALID', `NarHash must be sha256, got ${hash.algo}`);
  return `${formatHash(hash, 'nix32').slice('sha256:'.length)}.nar.zst`;
}

/**
 * Parses the metadata line of a native upload (compact JSON: storePath, narHash, narSize,
 * references, and optionally deriver, ca, sigs; paths are full store paths) into the NarInfo
 * the commit checks, with `url`, `compression` and the file fields still to be filled in.
 */
export function parseUploadMetadata(line: Buffer): NarInfo {
  let raw: unknown;
  try {
    raw = JSON.parse(line.toString('utf8'));
  } catch (err) {
    throw new NarhubError('BAD_REQUEST', `metadata line is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new NarhubError('BAD_REQUEST', 'metadata line must be a JSON object');
  const m = raw as Record<string, unknown>;
  const unknown = Object.keys(m).filter((k) => !METADATA_FIELDS.has(k));
  if (unknown.length > 0)
    throw new NarhubError(
      'BAD_REQUEST',
      `metadata: unknown field ${unknown.map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}`,
    );

  const field = <T>(name: string, what: string, ok: (v: unknown) => v is T): T => {
    const v = m[name];
    if (!ok(v)) throw new NarhubError('BAD_REQUEST', `metadata: ${name} must be ${what}`);
    return v;
  };
  const isString = (v: unknown): v is string => typeof v === 'string';
  const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
  const optional = <T>(name: string, what: string, ok: (v: unknown) => v is T): T | undefined =>
    m[name] === undefined || m[name] === null ? undefined : field(name, what, ok);
  // Keep the code of the underlying check (STORE_PATH_INVALID, HASH_INVALID), say where it failed.
  const checked = <T>(name: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (isNarhubError(err)) throw new NarhubError(err.code, `metadata: ${name}: ${err.message}`);
      throw err;
    }
  };

  const storePath = field('storePath', 'a string', isString);
  checked('storePath', () => parseStorePath(storePath));
  const narHashText = field('narHash', 'a string', isString);
  const narHash = checked('narHash', () => {
    const hash = parseHash(narHashText);
    if (hash.algo !== 'sha256') throw new NarhubError('HASH_INVALID', `must be sha256, got ${hash.algo}`);
    return formatHash(hash, 'nix32');
  });
  const narSize = field(
    'narSize',
    'a positive integer',
    (v): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0,
  );
  const references = field('references', 'an array of store paths', isStringArray).map((ref, i) =>
    checked(`references[${i}]`, () => parseStorePath(ref).basename),
  );
  const deriverPath = optional('deriver', 'a store path or null', isString);
  const deriver =
    deriverPath === undefined
      ? undefined
      : checked('deriver', () => {
          const p = parseStorePath(deriverPath);
          if (!isDerivationPath(p)) throw new NarhubError('STORE_PATH_INVALID', `${deriverPath} is not a .drv`);
          return p.basename;
        });
  const ca = optional('ca', 'a string or null', isString);
  const sigs = optional('sigs', 'an array of strings', isStringArray) ?? [];

  const info: NarInfo = {
    storePath,
    url: '',
    compression: 'zstd',
    narHash,
    narSize,
    references: [...new Set(references)],
    sigs: [...new Set(sigs)],
  };
  if (deriver !== undefined) info.deriver = deriver;
  if (ca !== undefined) info.ca = ca;
  return info;
}

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
export function createNativeUpload(deps: {
  store: BlobStore;
  nars: NarsRepo;
  paths: PathsRepo;
  commit: PathCommit;
  lock: KeyedLock;
  zstd: ZstdOptions;
}) {
  const { store, nars, paths, commit, lock, zstd } = deps;

  /** `receive` for a NAR of at most SMALL_NAR_SIZE bytes: the same checks, in memory. */
  async function receiveSmall(
    cache: CacheRow,
    fileName: string,
    info: NarInfo,
    body: Readable,
    options: NativeUploadOptions,
  ): Promise<NarRow> {
    const key = narStorageKey(cache.name, fileName);
    let narBytes: Buffer;
    try {
      // Refused as soon as it runs past NarSize.
      narBytes = await readSmallBody(body, info.narSize);
    } catch (err) {
      if (isNarhubError(err) && err.code === 'BODY_TOO_LARGE')
        throw new NarhubError('NAR_SIZE_MISMATCH', `the NAR is longer than its NarSize ${info.narSize}`);
      if (isNarhubError(err))
        throw new NarhubError('BAD_REQUEST', 'upload aborted before the NAR was complete', { cause: err });
      throw err;
    }
    options.signal?.throwIfAborted();
    const parser = new NarParser({ listing: true });
    parser.update(narBytes);
    const nar = parser.finish();
    checkNar(info, nar.narHash, nar.narSize);
    const file = zstdCompressSmall(narBytes, zstd.level);
    // Side by side: the two writes share their wait for the disk.
    const [, listingKey] = await Promise.all([
      store.put(key, file, { signal: options.signal, size: file.length, contentType: 'application/x-nix-nar' }),
      nar.listing === undefined ? null : storeGeneratedListing(store, cache.name, fileName, formatListing(nar.listing)),
    ]);
    nars.putPending({
      cacheId: cache.id,
      fileName,
      storageKey: key,
      compression: 'zstd',
      fileHash: formatHash(sha256Of(file), 'nix32'),
      fileSize: file.length,
      narHash: nar.narHash,
      narSize: nar.narSize,
      listingKey,
    });
    return nars.get(cache.id, fileName)!;
  }

  async function receive(
    cache: CacheRow,
    fileName: string,
    info: NarInfo,
    body: Readable,
    options: NativeUploadOptions,
  ): Promise<NarRow> {
    if (info.narSize <= SMALL_NAR_SIZE) return receiveSmall(cache, fileName, info, body, options);
    const key = narStorageKey(cache.name, fileName);
    // `pipe`, not pipeline: a failure must not destroy the request (and with it the socket).
    // No buffer between them: the codec stream holds up to four 1 MiB slabs already.
    const limit = createByteLimit(info.narSize);
    const onAbort = () => limit.destroy(new NarhubError('BAD_REQUEST', 'upload aborted before the NAR was complete'));
    body.once('aborted', onAbort).once('error', onAbort);
    body.pipe(limit);

    const { pass } = createNarPass({ listing: true, compress: { level: zstd.level, workers: zstd.workers } });
    const validated = pass.result();

    // The compressed bytes go straight to storage; their hash and length come from the thread.
    const stored = store.put(key, pass, {
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
    const failure = pickFailure(results, info.narSize);
    if (failure !== undefined) {
      body.unpipe(limit);
      drain(body);
      throw failure;
    }
    const nar = await validated;

    const listingKey =
      nar.listing === undefined ? null : await storeGeneratedListing(store, cache.name, fileName, nar.listing);
    nars.putPending({
      cacheId: cache.id,
      fileName,
      storageKey: key,
      compression: 'zstd',
      fileHash: formatHash(sha256Hash(pass.digest()), 'nix32'),
      fileSize: pass.bytes,
      narHash: nar.narHash,
      narSize: nar.narSize,
      listingKey,
    });
    return nars.get(cache.id, fileName)!;
  }

  return async function uploadPath(
    cache: CacheRow,
    hashPart: string,
    body: Readable,
    options: NativeUploadOptions,
  ): Promise<NativeUploadResult> {
    let info: NarInfo;
    try {
      info = parseUploadMetadata(await readFirstLine(body, MAX_METADATA_LINE));
      if (info.narSize > options.maxSize) {
        throw new NarhubError(
          'BODY_TOO_LARGE',
          `NAR of ${info.narSize} bytes exceeds the limit of ${options.maxSize} bytes`,
        );
      }
      commit.precheck(cache, hashPart, info);
    } catch (err) {
      drain(body);
      throw err;
    }
    const fileName = narHashFileName(info.narHash);
    info.url = `nar/${fileName}`;

    return lock.run(`${cache.id}/${fileName}`, async () => {
      let nar = nars.get(cache.id, fileName);
      let stored = false;
      if (paths.get(cache.id, hashPart) || nar?.state === 'valid') {
        // Already committed (the commit may still add signatures or refuse a change), or a
        // verified copy of this very NAR is here: the body adds nothing.
        drain(body);
      } else {
        nar = await receive(cache, fileName, info, body, options);
        stored = true;
      }
      const withFile: NarInfo = nar ? { ...info, fileHash: nar.fileHash, fileSize: nar.fileSize } : info;
      const result = await commit.commitInfo(cache, hashPart, withFile);
      const final = nars.getById(result.narId)!;
      return { ...result, info: withFile, nar: final, stored };
    });
  };
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

/** The most telling error: a NAR/format complaint beats the generic stream errors it causes. */
function pickFailure(results: PromiseSettledResult<unknown>[], narSize: number): unknown {
  const errors = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map((r) => r.reason as unknown);
  if (errors.length === 0) return undefined;
  const ours = (code?: ErrorCode) =>
    errors.find((e) => isNarhubError(e) && (code === undefined ? e.code !== 'STORAGE_ERROR' : e.code === code));
  const tooLong = ours('BODY_TOO_LARGE');
  if (tooLong) return new NarhubError('NAR_SIZE_MISMATCH', `the NAR is longer than its NarSize ${narSize}`);
  const found = ours() ?? ours('STORAGE_ERROR');
  if (found) return found;
  const code = (errors[0] as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ABORT_ERR' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET') {
    return new NarhubError('BAD_REQUEST', 'upload aborted before the NAR was complete', { cause: errors[0] });
  }
  return errors[0];
}

export type NativeUpload = ReturnType<typeof createNativeUpload>;
