import { PassThrough, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NarhubError, isNarhubError } from '../errors.js';
import { formatHash, sha256Hash } from '../nix/hash.js';
import type { ContentHashSpec } from '../nix/nar/content-hasher.js';
import { createByteLimit } from '../io/byte-limit.js';
import type { Compression } from '../io/compression.js';
import { fanOut } from '../io/fan-out.js';
import { createNarPass, type NarResult } from '../io/nar-pass.js';
import { Sha256Sink } from '../io/sha256-sink.js';
import type { BlobStore } from '../storage/blob-store.js';
import { isAbortLike } from './upload-failure.js';

/** What one pass over a NAR file found: the NAR's facts and the file's own hash and length. */
export interface VerifiedFile {
  nar: NarResult;
  /** `sha256:<nix32>` of the file as stored. */
  fileHash: string;
  fileSize: number;
}

export interface VerifiedPutOptions {
  /** How `file` is compressed (sniffed by the caller). */
  compression: Compression;
  /** BODY_TOO_LARGE past this many bytes of the file. */
  maxFileSize: number;
  /** BODY_TOO_LARGE past this many bytes of the NAR, decoded: a small file may decode to any size. */
  maxNarSize: number;
  signal?: AbortSignal | undefined;
  /** Also compute this content-address hash (`nar.contentHash`), in the same pass. */
  contentHash?: ContentHashSpec | undefined;
  /** Throws if the file is not the one expected; run before the file takes its name. */
  check(file: VerifiedFile): void;
  /** Picks the error to throw among the pass's failures (they cause one another). */
  pickFailure(results: PromiseSettledResult<unknown>[]): unknown;
}

/**
 * Stores a NAR file exactly as it comes (raw or compressed) under `key`, verifying it in the
 * same pass: the stored bytes are hashed and counted (FileHash/FileSize) on a codec thread while
 * a decoded copy is validated against every NAR rule and hashed (NarHash/NarSize, the listing;
 * `io/nar-pass.ts`, the decoder on a thread of its own). The event loop only moves the bytes to
 * the store and the threads; decoded bytes never reach it. A raw NAR's file hash is its NarHash:
 * it is hashed once. Only once all of it holds and `check` passes does the file take its name.
 */
export async function putVerifiedNarFile(
  store: BlobStore,
  key: string,
  file: Readable,
  opts: VerifiedPutOptions,
): Promise<VerifiedFile> {
  const { compression } = opts;
  const toStore = new PassThrough({ highWaterMark: 1 << 20 });
  const { input: narInput, pass: validator } = createNarPass({
    listing: true,
    decompress: compression,
    maxSize: opts.maxNarSize,
    ...(opts.contentHash ? { contentHash: opts.contentHash } : {}),
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
  const verified = async (): Promise<VerifiedFile> => {
    const nar = await validated;
    const { hash, bytes } = await fileHashed;
    return { nar, fileHash: hash, fileSize: bytes };
  };

  const stored = store.put(key, toStore, {
    signal: opts.signal,
    contentType: 'application/x-nix-nar',
    beforeCommit: async () => opts.check(await verified()),
  });
  stored.catch(() => undefined);

  const targets: Writable[] = [toStore, narInput];
  if (fileHasher) targets.push(fileHasher);
  const received = pipeline(
    file,
    createByteLimit(opts.maxFileSize),
    fanOut(...targets),
    opts.signal ? { signal: opts.signal } : {},
  );

  const results = await Promise.allSettled([received, validated, stored]);
  if (results.some((r) => r.status === 'rejected')) throw opts.pickFailure(results);
  return verified();
}

/**
 * Whatever the decompressor throws is about the bytes it was fed, which came from the client:
 * a truncated or corrupt stream is the uploader's error (4xx, not retried), however the library
 * words it (liblzma's "No progress is possible", zlib's "unexpected end of file", …). Aborts and
 * our own errors pass through unchanged.
 */
export function corruptInput(err: unknown, compression: Compression): unknown {
  if (isNarhubError(err) || isAbortLike(err)) return err;
  const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
  return new NarhubError('NAR_INVALID', `cannot decompress the body as ${compression}: ${message}`, { cause: err });
}
