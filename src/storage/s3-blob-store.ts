import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { NarhubError } from '../errors.js';
import { abortError } from '../io/abort.js';
import {
  assertValidKey,
  isValidKey,
  type BlobGetOptions,
  type BlobInfo,
  type BlobPresignOptions,
  type BlobPutOptions,
  type BlobRead,
  type BlobStore,
  abortableRead,
} from './blob-store.js';
import { BufferMeter, PartReader } from './part-reader.js';
import { MAX_PARTS, putMultipart } from './s3-multipart.js';
import { abortStaleUploads } from './s3-stale-uploads.js';
import { checkSize, isNotFound, type S3Context, s3Request, statusOf, storageError } from './s3-request.js';

type Body = Readable | AsyncIterable<Uint8Array> | Uint8Array;

const MIB = 1024 * 1024;
/** S3's floor for every part but the last. */
const MIN_PART_SIZE = 5 * MIB;
/** SigV4 presigned URLs live at most a week. */
const MAX_PRESIGN_SECONDS = 604_800;

export interface S3BlobStoreOptions {
  bucket: string;
  region: string;
  /** S3-compatible endpoint URL; AWS when unset. */
  endpoint?: string | undefined;
  /** Prepended to every key, e.g. `narhub/` (a missing trailing `/` is added). */
  prefix?: string | undefined;
  forcePathStyle?: boolean | undefined;
  /** Static credentials (config/s3-credentials.ts reads them); the SDK's default provider chain when unset. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string | undefined } | undefined;
  /** Multipart part size in bytes (default 16 MiB, at least 5 MiB). */
  partSize?: number | undefined;
  /** Parts of one put in flight at once (default 4). */
  queueSize?: number | undefined;
}

/** Bytes of upload bodies the store holds in memory right now, and the most it ever held. */
export interface S3BufferStats {
  buffered: number;
  peak: number;
}

export interface S3BlobStore extends BlobStore {
  presignGet(key: string, options: BlobPresignOptions): Promise<string>;
  /** For tests and metrics: memory held by in-flight puts, bounded by about (queueSize + 2) × partSize per put. */
  bufferStats(): S3BufferStats;
}

/** `narhub` → `narhub/`; '' stays ''. Every segment must be a valid key segment. */
function normalisePrefix(prefix: string | undefined): string {
  if (prefix === undefined || prefix === '') return '';
  const trimmed = prefix.replace(/\/+$/, '');
  if (!isValidKey(trimmed))
    throw new NarhubError('CONFIG_INVALID', `storage.prefix ${JSON.stringify(prefix)} is not a valid key prefix`);
  return `${trimmed}/`;
}

function s3Client(options: S3BlobStoreOptions, queueSize: number): S3Client {
  // Keep-alive sockets, enough for several puts' parts and many concurrent reads.
  const agentOptions = { keepAlive: true, maxSockets: Math.max(64, queueSize * 8) };
  return new S3Client({
    region: options.region,
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    forcePathStyle: options.forcePathStyle ?? false,
    ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
    requestHandler: { httpAgent: new HttpAgent(agentOptions), httpsAgent: new HttpsAgent(agentOptions) },
  });
}

/**
 * A BlobStore on an S3 bucket (AWS or any S3-compatible server). Key `a/b` is the object
 * `<prefix>a/b`, so the bucket holds a plain Nix binary cache.
 *
 * Puts never let unverified bytes take a key: a body of at most one part is buffered and sent
 * with one PutObject after `beforeCommit`; a larger one goes up as a multipart upload whose
 * parts are read from the body with backpressure (at most `queueSize` parts in flight, one more
 * being filled) and which is completed only after `beforeCommit` succeeds (`s3-multipart.ts`).
 * S3 shows no object before CompleteMultipartUpload, and a failed, aborted or rejected put
 * aborts its upload.
 */
export function createS3BlobStore(options: S3BlobStoreOptions): S3BlobStore {
  const base = normalisePrefix(options.prefix);
  const partSize = options.partSize ?? 16 * MIB;
  const queueSize = options.queueSize ?? 4;
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE) {
    throw new NarhubError('CONFIG_INVALID', `storage.partSize must be at least ${MIN_PART_SIZE} bytes`);
  }
  if (!Number.isSafeInteger(queueSize) || queueSize < 1)
    throw new NarhubError('CONFIG_INVALID', 'storage.queueSize must be at least 1');
  const ctx: S3Context = {
    client: s3Client(options, queueSize),
    bucket: options.bucket,
    queueSize,
    meter: new BufferMeter(),
    uploads: new Set(),
  };
  const objectKey = (key: string): string => {
    assertValidKey(key);
    return base + key;
  };

  return {
    kind: 's3',
    // Async, so an invalid key rejects like every other failure.
    put: async (key, body, opts = {}) => put(ctx, key, objectKey(key), body, partSize, opts),
    get: async (key, opts = {}) => get(ctx, key, objectKey(key), opts),
    stat: async (key) => stat(ctx, key, objectKey(key)),
    delete: async (key) => {
      const Key = objectKey(key);
      await s3Request('delete', key, undefined, () =>
        ctx.client.send(new DeleteObjectCommand({ Bucket: ctx.bucket, Key })),
      );
    },
    list: (prefix) => list(ctx, base, prefix),
    presignGet: async (key, presign) => presignGet(ctx, key, objectKey(key), presign),
    bufferStats: () => ({ buffered: ctx.meter.buffered, peak: ctx.meter.peak }),
    abortStaleUploads: (olderThanMs) => abortStaleUploads(ctx, base, olderThanMs),
    async close() {
      ctx.client.destroy();
    },
  };
}

async function put(
  ctx: S3Context,
  key: string,
  Key: string,
  body: Body,
  partSize: number,
  opts: BlobPutOptions,
): Promise<BlobInfo> {
  const { signal, size, contentType } = opts;
  signal?.throwIfAborted();
  // One part size per put: a known, huge size gets parts big enough to stay within 10,000.
  const thisPartSize =
    size !== undefined && size > partSize * MAX_PARTS ? Math.ceil(size / MAX_PARTS / MIB) * MIB : partSize;
  const reader = new PartReader(body, thisPartSize, signal, ctx.meter);
  try {
    const first = await reader.next();
    if (first !== null && !(await reader.atEnd())) return await putMultipart(ctx, key, Key, reader, first, opts);
    // One part or less: buffered whole, so the hook runs before anything is sent.
    const bytes = first ?? Buffer.alloc(0);
    try {
      checkSize(key, size, reader.total);
      await opts.beforeCommit?.();
      signal?.throwIfAborted();
      await s3Request('put', key, signal, () =>
        ctx.client.send(
          new PutObjectCommand({
            Bucket: ctx.bucket,
            Key,
            Body: bytes,
            ContentLength: bytes.byteLength,
            ...(contentType ? { ContentType: contentType } : {}),
          }),
          signal ? { abortSignal: signal } : {},
        ),
      );
    } finally {
      ctx.meter.release(bytes.byteLength);
    }
    return { size: reader.total };
  } catch (err) {
    reader.destroy();
    throw err;
  }
}

async function get(ctx: S3Context, key: string, Key: string, opts: BlobGetOptions): Promise<BlobRead | null> {
  const { signal, range } = opts;
  signal?.throwIfAborted();
  if (range !== undefined) {
    const { start, end } = range;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new NarhubError('RANGE_NOT_SATISFIABLE', `range ${start}-${end} is not a valid byte range`);
    }
  }
  let res;
  try {
    res = await ctx.client.send(
      new GetObjectCommand({
        Bucket: ctx.bucket,
        Key,
        ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
      }),
      signal ? { abortSignal: signal } : {},
    );
  } catch (err) {
    if (isNotFound(err)) return null;
    if (statusOf(err) === 416)
      throw new NarhubError('RANGE_NOT_SATISFIABLE', `range ${range?.start}-${range?.end} is outside ${key}`);
    if (signal?.aborted) throw abortError(signal);
    throw storageError('get', key, err);
  }
  const stream = res.Body;
  if (!(stream instanceof Readable)) {
    throw new NarhubError('STORAGE_ERROR', `S3 get of ${JSON.stringify(key)} returned no body stream`);
  }
  try {
    const length = res.ContentLength ?? 0;
    if (range === undefined) return abortableRead({ stream, size: length, totalSize: length }, signal);
    return abortableRead(rangeRead(key, stream, range, res.ContentRange), signal);
  } catch (err) {
    stream.destroy();
    throw err;
  }
}

/** The answer to a ranged GET, checked against what was asked. */
function rangeRead(
  key: string,
  stream: Readable,
  range: { start: number; end: number },
  contentRange: string | undefined,
): BlobRead {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange ?? '');
  if (!m)
    throw new NarhubError(
      'STORAGE_ERROR',
      `S3 get of ${JSON.stringify(key)} with a range returned Content-Range ${JSON.stringify(contentRange)}`,
    );
  const [gotStart, gotEnd, totalSize] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (range.end >= totalSize) {
    throw new NarhubError(
      'RANGE_NOT_SATISFIABLE',
      `range ${range.start}-${range.end} is outside ${key} (${totalSize} bytes)`,
    );
  }
  const size = range.end - range.start + 1;
  if (gotStart !== range.start || gotEnd < range.end) {
    throw new NarhubError(
      'STORAGE_ERROR',
      `S3 answered bytes ${gotStart}-${gotEnd} of ${JSON.stringify(key)} for ${range.start}-${range.end}`,
    );
  }
  // Some S3-compatible servers send more than asked (e.g. the whole object for `bytes=0-0`).
  return { stream: gotEnd > range.end ? take(stream, size) : stream, size, totalSize };
}

async function stat(ctx: S3Context, key: string, Key: string): Promise<BlobInfo | null> {
  try {
    const res = await ctx.client.send(new HeadObjectCommand({ Bucket: ctx.bucket, Key }));
    return { size: res.ContentLength ?? 0 };
  } catch (err) {
    if (isNotFound(err)) return null;
    throw storageError('stat', key, err);
  }
}

async function* list(ctx: S3Context, base: string, prefix: string): AsyncGenerator<string> {
  let token: string | undefined;
  do {
    const ContinuationToken = token;
    const res = await s3Request('list', prefix, undefined, () =>
      ctx.client.send(
        new ListObjectsV2Command({
          Bucket: ctx.bucket,
          Prefix: base + prefix,
          ...(ContinuationToken ? { ContinuationToken } : {}),
        }),
      ),
    );
    for (const object of res.Contents ?? []) {
      const full = object.Key;
      if (full === undefined || !full.startsWith(base)) continue;
      const key = full.slice(base.length);
      // Objects no key could name (written by someone else) are not ours to list.
      if (key.startsWith(prefix) && isValidKey(key)) yield key;
    }
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token !== undefined);
}

async function presignGet(ctx: S3Context, key: string, Key: string, presign: BlobPresignOptions): Promise<string> {
  const { expiresIn } = presign;
  if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > MAX_PRESIGN_SECONDS) {
    throw new NarhubError(
      'CONFIG_INVALID',
      `a presigned URL must expire within 1-${MAX_PRESIGN_SECONDS} seconds, not ${expiresIn}`,
    );
  }
  return s3Request('presign', key, undefined, () =>
    getSignedUrl(ctx.client, new GetObjectCommand({ Bucket: ctx.bucket, Key }), { expiresIn }),
  );
}

/** The first `n` bytes of `stream`; the rest is never read and the stream is destroyed. */
function take(stream: Readable, n: number): Readable {
  async function* limited(): AsyncGenerator<Uint8Array> {
    let left = n;
    try {
      for await (const chunk of stream) {
        const bytes = chunk as Buffer;
        if (bytes.byteLength >= left) {
          yield bytes.subarray(0, left);
          return;
        }
        left -= bytes.byteLength;
        yield bytes;
      }
    } finally {
      stream.destroy();
    }
  }
  return Readable.from(limited(), { objectMode: false });
}
