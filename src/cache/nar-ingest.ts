import { Readable } from 'node:stream';
import { NarhubError, isNarhubError } from '../errors.js';
import { formatHash, sha256Of } from '../nix/hash.js';
import { formatListing } from '../nix/nar/listing.js';
import { NarParser } from '../nix/nar/nar-parser.js';
import { compressionsWithExtension, decompressSmall, sniffCompression, type Compression } from '../io/compression.js';
import { readHead } from '../io/read-head.js';
import { readSmallBody } from '../io/read-small-body.js';
import type { WaitSlots } from '../io/wait-slots.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { NarRow, NarsRepo } from '../db/nars-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { parseNarFileName } from './nar-file-name.js';
import type { NarSync } from './nar-sync.js';
import { isAbortLike, mostTelling, rejections } from './upload-failure.js';
import { corruptInput, putVerifiedNarFile } from './verified-nar-file.js';

export interface IngestOptions {
  signal?: AbortSignal | undefined;
  /** Declared Content-Length, checked against the limit before reading anything. */
  contentLength?: number | undefined;
  maxSize: number;
}

export const narStorageKey = (cache: string, fileName: string) => `${cache}/nar/${fileName}`;
export const generatedListingKey = (cache: string, fileName: string) => `${cache}/listing/${fileName}.ls`;

/**
 * Stores the listing narhub built while validating a NAR (formatted, `formatListing`); its key,
 * or null if that failed.
 */
export async function storeGeneratedListing(
  store: BlobStore,
  cache: string,
  fileName: string,
  listing: string,
  durable = true,
): Promise<string | null> {
  const key = generatedListingKey(cache, fileName);
  try {
    await store.put(key, Buffer.from(listing), { contentType: 'application/json', durable });
    return key;
  } catch {
    // A listing is a convenience; the NAR itself is what must not be lost.
    return null;
  }
}

/**
 * Uploads of at most this many bytes (by Content-Length) that decode to at most SMALL_DECODED
 * bytes are received whole and checked on the event loop: for a NAR of a few KiB, decoding,
 * validating and hashing take microseconds, far less than the codec threads' hand-offs and a
 * streamed put (measured: 115 futex calls and 12 ms per 20 KB path on a loaded machine,
 * `bench/small-paths.bench.ts`). Larger ones stream.
 */
export const SMALL_UPLOAD_SIZE = 64 * 1024;
const SMALL_DECODED = 1024 * 1024;

/**
 * Stores a NAR file in hand and the listing narhub built for it, side by side, without waiting
 * for the disk, and starts their fsync (`nar-sync.ts`: the commit waits for it); the listing's
 * key, or null.
 */
export async function putSmallNar(
  to: { store: BlobStore; narSync: NarSync },
  cache: CacheRow,
  fileName: string,
  file: Uint8Array,
  listing: string | undefined,
  signal: AbortSignal | undefined,
): Promise<string | null> {
  const key = narStorageKey(cache.name, fileName);
  const [, listingKey] = await Promise.all([
    to.store.put(key, file, { signal, size: file.length, contentType: 'application/x-nix-nar', durable: false }),
    listing === undefined ? null : storeGeneratedListing(to.store, cache.name, fileName, listing, false),
  ]);
  to.narSync.start(cache.id, fileName, listingKey === null ? [key] : [key, listingKey]);
  return listingKey;
}

/**
 * Receives a NAR file as Nix uploads it, in one streaming pass: the stored bytes are hashed
 * and counted (FileHash/FileSize) while a decompressed copy is validated against every NAR
 * rule and hashed (NarHash/NarSize). Only when all of that holds, and the file hash matches
 * the name, does the file appear under its name, recorded as pending until a narinfo claims it.
 *
 * That byte work runs on codec threads (`verified-nar-file.ts`, which a native upload of a
 * client's zstd frame shares). Uploads of at most SMALL_UPLOAD_SIZE are checked in memory.
 */
export function createNarIngest(deps: {
  store: BlobStore;
  nars: NarsRepo;
  narSync: NarSync;
  /** Slots every xz decode takes (each may hold an 80 MiB dictionary); none: unbounded. */
  xzDecodes?: WaitSlots | undefined;
}) {
  const { store, nars, narSync, xzDecodes } = deps;

  return async function ingestNar(
    cache: CacheRow,
    fileName: string,
    body: Readable,
    options: IngestOptions,
  ): Promise<NarRow> {
    const name = parseNarFileName(fileName);
    const existing = nars.get(cache.id, fileName);
    if (existing?.state === 'valid') {
      // Same name, same hash, already verified: keep what we have, ignore the bytes.
      body.resume();
      return existing;
    }
    if (options.contentLength !== undefined && options.contentLength > options.maxSize) {
      throw new NarhubError(
        'BODY_TOO_LARGE',
        `NAR of ${options.contentLength} bytes exceeds the limit of ${options.maxSize} bytes`,
      );
    }

    if (options.contentLength !== undefined && options.contentLength <= SMALL_UPLOAD_SIZE) {
      const bytes = await readSmallBody(body, SMALL_UPLOAD_SIZE, options.contentLength);
      const small = await ingestSmall(cache, fileName, bytes, options);
      if (small !== undefined) return small;
      // Too large once decoded, or a compression that only streams.
      body = Readable.from([bytes]);
    }

    const { head, stream } = await readHead(body, 16);
    if (head.length === 0) throw new NarhubError('NAR_INVALID', 'empty NAR upload');
    const compression = sniffCompression(head, name.extension === '.br' ? 'br' : undefined);
    checkCompression(name.extension, compression);
    // Nothing of the body is read while it waits for its turn.
    const release = compression === 'xz' && xzDecodes ? await xzDecodes.acquire(options.signal) : undefined;
    try {
      return await ingestStream(cache, fileName, stream, compression, options);
    } finally {
      release?.();
    }
  };

  async function ingestStream(
    cache: CacheRow,
    fileName: string,
    stream: Readable,
    compression: Compression,
    options: IngestOptions,
  ): Promise<NarRow> {
    const name = parseNarFileName(fileName);
    const { nar, fileSize } = await putVerifiedNarFile(store, narStorageKey(cache.name, fileName), stream, {
      compression,
      // The limit holds for the NAR itself too, not only for the bytes received.
      maxFileSize: options.maxSize,
      maxNarSize: options.maxSize,
      signal: options.signal,
      check: ({ fileHash }) => {
        if (fileHash !== `sha256:${name.fileHash}`) {
          throw new NarhubError('FILE_HASH_MISMATCH', `file hash ${fileHash} does not match the name ${fileName}`);
        }
      },
      pickFailure,
    });

    const listingKey =
      nar.listing === undefined ? null : await storeGeneratedListing(store, cache.name, fileName, nar.listing);

    narSync.durable(cache.id, fileName);
    return recordPending(cache, fileName, compression, fileSize, nar, listingKey);
  }

  function recordPending(
    cache: CacheRow,
    fileName: string,
    compression: Compression,
    fileSize: number,
    nar: { narHash: string; narSize: number },
    listingKey: string | null,
  ): NarRow {
    nars.putPending({
      cacheId: cache.id,
      fileName,
      storageKey: narStorageKey(cache.name, fileName),
      compression,
      fileHash: `sha256:${parseNarFileName(fileName).fileHash}`,
      fileSize,
      narHash: nar.narHash,
      narSize: nar.narSize,
      listingKey,
    });
    return nars.get(cache.id, fileName)!;
  }

  /**
   * The same checks as the streaming pass, on a body in hand: undefined when it must stream
   * after all (it decodes to more than SMALL_DECODED or maxSize bytes, or is xz or bzip2).
   */
  async function ingestSmall(
    cache: CacheRow,
    fileName: string,
    bytes: Buffer,
    options: IngestOptions,
  ): Promise<NarRow | undefined> {
    const { signal } = options;
    const name = parseNarFileName(fileName);
    if (bytes.length === 0) throw new NarhubError('NAR_INVALID', 'empty NAR upload');
    const compression = sniffCompression(bytes.subarray(0, 16), name.extension === '.br' ? 'br' : undefined);
    checkCompression(name.extension, compression);
    let decoded: Buffer | undefined;
    try {
      // Past maxSize once decoded it streams, and the stream refuses it (BODY_TOO_LARGE).
      decoded = decompressSmall(bytes, compression, Math.min(SMALL_DECODED, options.maxSize));
    } catch (err) {
      throw corruptInput(err, compression);
    }
    if (decoded === undefined) return undefined;
    const parser = new NarParser({ listing: true });
    parser.update(decoded);
    const nar = parser.finish();
    const fileHash = compression === 'none' ? nar.narHash : formatHash(sha256Of(bytes), 'nix32');
    if (fileHash !== `sha256:${name.fileHash}`) {
      throw new NarhubError('FILE_HASH_MISMATCH', `file hash ${fileHash} does not match the name ${fileName}`);
    }
    signal?.throwIfAborted();
    const listing = nar.listing === undefined ? undefined : formatListing(nar.listing);
    const listingKey = await putSmallNar(deps, cache, fileName, bytes, listing, signal);
    return recordPending(cache, fileName, compression, bytes.length, nar, listingKey);
  }
}

/** The body's compression must be one its file name allows. */
function checkCompression(extension: string, compression: Compression | null): asserts compression is Compression {
  if (!compression)
    throw new NarhubError('COMPRESSION_UNSUPPORTED', 'body is neither a NAR nor xz, zstd, bzip2, gzip or brotli');
  // `.nar` may hold a raw or a gzip-compressed NAR (docs/protocol.md, Compression).
  if (!compressionsWithExtension(extension).includes(compression)) {
    throw new NarhubError(
      'COMPRESSION_MISMATCH',
      `file name ends in ${extension || '.nar'} but the body is ${compression}`,
    );
  }
}

/** The most telling error (mostTelling), a decompressor's own error read as a corrupt body. */
function pickFailure(results: PromiseSettledResult<unknown>[]): unknown {
  const errors = rejections(results);
  if (errors.length === 0) return undefined;
  const found = mostTelling(errors, 'body');
  // Decompressors report corrupt input with their own errors.
  if (
    found instanceof Error &&
    !isNarhubError(found) &&
    !isAbortLike(found) &&
    /(compress|format|corrupt|lzma|zstd|header|check|data|bzip|gzip|brotli)/i.test(found.message)
  ) {
    return new NarhubError('NAR_INVALID', `cannot decompress the body: ${found.message.split('\n')[0]}`, {
      cause: found,
    });
  }
  return found;
}

export type NarIngest = ReturnType<typeof createNarIngest>;
