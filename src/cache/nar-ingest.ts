import { PassThrough, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NarhubError, isNarhubError } from '../errors.js';
import { formatHash, sha256Hash } from '../nix/hash.js';
import { createByteLimit } from '../io/byte-limit.js';
import { compressionsWithExtension, sniffCompression, type Compression } from '../io/compression.js';
import { fanOut } from '../io/fan-out.js';
import { createNarPass } from '../io/nar-pass.js';
import { Sha256Sink } from '../io/sha256-sink.js';
import { readHead } from '../io/read-head.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { NarRow, NarsRepo } from '../db/nars-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { parseNarFileName } from './nar-file-name.js';
import { isAbortLike, mostTelling, rejections } from './upload-failure.js';

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
): Promise<string | null> {
  const key = generatedListingKey(cache, fileName);
  try {
    await store.put(key, Buffer.from(listing), { contentType: 'application/json' });
    return key;
  } catch {
    // A listing is a convenience; the NAR itself is what must not be lost.
    return null;
  }
}

/**
 * Receives a NAR file as Nix uploads it, in one streaming pass: the stored bytes are hashed
 * and counted (FileHash/FileSize) while a decompressed copy is validated against every NAR
 * rule and hashed (NarHash/NarSize). Only when all of that holds, and the file hash matches
 * the name, does the file appear under its name, recorded as pending until a narinfo claims it.
 *
 * That byte work runs on codec threads (`io/codec-thread/codec-stream.ts`): the file is hashed on
 * one, decoded on another, which hands the NAR straight to a third stream that validates,
 * hashes and lists it (`io/nar-pass.ts`; two threads here share the three). The event
 * loop only moves the uploaded bytes, to the store and to the threads; decoded bytes never
 * reach it. A raw NAR's file hash is its NarHash: it is hashed once.
 */
export function createNarIngest(deps: { store: BlobStore; nars: NarsRepo }) {
  const { store, nars } = deps;

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

    const { head, stream } = await readHead(body, 16);
    if (head.length === 0) throw new NarhubError('NAR_INVALID', 'empty NAR upload');
    const compression = sniffCompression(head, name.extension === '.br' ? 'br' : undefined);
    if (!compression)
      throw new NarhubError('COMPRESSION_UNSUPPORTED', 'body is neither a NAR nor xz, zstd, bzip2, gzip or brotli');
    // `.nar` may hold a raw or a gzip-compressed NAR (docs/protocol.md, Compression).
    if (!compressionsWithExtension(name.extension).includes(compression)) {
      throw new NarhubError(
        'COMPRESSION_MISMATCH',
        `file name ends in ${name.extension || '.nar'} but the body is ${compression}`,
      );
    }

    const toStore = new PassThrough({ highWaterMark: 1 << 20 });
    // The limit holds for the NAR itself too, not only for the bytes received.
    const { input: narInput, pass: validator } = createNarPass({
      listing: true,
      decompress: compression,
      maxSize: options.maxSize,
    });
    const fileHasher = compression === 'none' ? undefined : new Sha256Sink();
    const validated = validator.result().catch((err: unknown) => {
      throw corruptInput(err, compression);
    });
    // Held so its rejection is observed even if the upload fails first.
    validated.catch(() => undefined);
    const fileHashed: Promise<{ hash: string; bytes: number }> = fileHasher
      ? fileHasher.result().then((f) => ({ hash: formatHash(sha256Hash(f.sha256), 'nix32'), bytes: f.bytes }))
      : validated.then((nar) => ({ hash: nar.narHash, bytes: nar.narSize }));
    fileHashed.catch(() => undefined);

    const key = narStorageKey(cache.name, fileName);
    const stored = store.put(key, toStore, {
      signal: options.signal,
      contentType: 'application/x-nix-nar',
      beforeCommit: async () => {
        await validated;
        const fileHash = (await fileHashed).hash;
        if (fileHash !== `sha256:${name.fileHash}`) {
          throw new NarhubError('FILE_HASH_MISMATCH', `file hash ${fileHash} does not match the name ${fileName}`);
        }
      },
    });
    stored.catch(() => undefined);

    const targets: Writable[] = [toStore, narInput];
    if (fileHasher) targets.push(fileHasher);
    const received = pipeline(
      stream,
      createByteLimit(options.maxSize),
      fanOut(...targets),
      options.signal ? { signal: options.signal } : {},
    );

    const results = await Promise.allSettled([received, validated, stored]);
    const failure = pickFailure(results);
    if (failure) throw failure;
    const nar = await validated;

    const listingKey =
      nar.listing === undefined ? null : await storeGeneratedListing(store, cache.name, fileName, nar.listing);

    const row = {
      cacheId: cache.id,
      fileName,
      storageKey: key,
      compression,
      fileHash: `sha256:${name.fileHash}`,
      fileSize: (await fileHashed).bytes,
      narHash: nar.narHash,
      narSize: nar.narSize,
      listingKey,
    };
    nars.putPending(row);
    return nars.get(cache.id, fileName)!;
  };
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

/**
 * Whatever the decompressor throws is about the bytes it was fed, which came from the client:
 * a truncated or corrupt stream is the uploader's error (4xx, not retried), however the library
 * words it (liblzma's "No progress is possible", zlib's "unexpected end of file", …). Aborts and
 * our own errors pass through unchanged.
 */
function corruptInput(err: unknown, compression: Compression): unknown {
  if (isNarhubError(err) || isAbortLike(err)) return err;
  const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
  return new NarhubError('NAR_INVALID', `cannot decompress the body as ${compression}: ${message}`, { cause: err });
}

export type NarIngest = ReturnType<typeof createNarIngest>;
