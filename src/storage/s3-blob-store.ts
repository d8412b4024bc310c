import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { addAbortSignal, Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { NarhubError } from '../errors.js';
import {
  assertValidKey,
  isValidKey,
  type BlobGetOptions,
  type BlobInfo,
  type BlobPresignOptions,
  type BlobPutOptions,
  type BlobRead,
  type BlobStore,
} from './blob-store.js';

type Body = Readable | AsyncIterable<Uint8Array> | Uint8Array;

const MIB = 1024 * 1024;
/** S3's floor for every part but the last. */
export const MIN_PART_SIZE = 5 * MIB;
/** S3's ceiling on parts per multipart upload. */
const MAX_PARTS = 10_000;
/** SigV4 presigned URLs live at most a week. */
const MAX_PRESIGN_SECONDS = 604_800;

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

export interface S3CredentialFiles {
  accessKeyIdFile?: string | undefined;
  secretAccessKeyFile?: string | undefined;
  sessionTokenFile?: string | undefined;
}

export interface S3BlobStoreOptions {
  bucket: string;
  region: string;
  /** S3-compatible endpoint URL; AWS when unset. */
  endpoint?: string | undefined;
  /** Prepended to every key, e.g. `narhub/` (a missing trailing `/` is added). */
  prefix?: string | undefined;
  forcePathStyle?: boolean | undefined;
  /** Static credentials; the SDK's default provider chain when unset. */
  credentials?: S3Credentials | undefined;
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

/**
 * Reads static credentials from the files named in the config, once, trimmed. The values are
 * never logged nor put in an error message; only the file names are.
 */
export function readS3CredentialFiles(files: S3CredentialFiles): S3Credentials | undefined {
  const { accessKeyIdFile, secretAccessKeyFile, sessionTokenFile } = files;
  if (accessKeyIdFile === undefined && secretAccessKeyFile === undefined) {
    if (sessionTokenFile !== undefined) {
      throw new NarhubError('CONFIG_INVALID', 'storage.sessionTokenFile needs accessKeyIdFile and secretAccessKeyFile');
    }
    return undefined;
  }
  if (accessKeyIdFile === undefined || secretAccessKeyFile === undefined) {
    throw new NarhubError('CONFIG_INVALID', 'storage.accessKeyIdFile and storage.secretAccessKeyFile go together');
  }
  const read = (file: string, what: string): string => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new NarhubError(
        'CONFIG_INVALID',
        `cannot read ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    const value = text.trim();
    if (value === '') throw new NarhubError('CONFIG_INVALID', `${what} file ${file} is empty`);
    return value;
  };
  return {
    accessKeyId: read(accessKeyIdFile, 'access key id'),
    secretAccessKey: read(secretAccessKeyFile, 'secret access key'),
    ...(sessionTokenFile !== undefined ? { sessionToken: read(sessionTokenFile, 'session token') } : {}),
  };
}

/** `narhub` → `narhub/`; '' stays ''. Every segment must be a valid key segment. */
function normalisePrefix(prefix: string | undefined): string {
  if (prefix === undefined || prefix === '') return '';
  const trimmed = prefix.replace(/\/+$/, '');
  if (!isValidKey(trimmed))
    throw new NarhubError('CONFIG_INVALID', `storage.prefix ${JSON.stringify(prefix)} is not a valid key prefix`);
  return `${trimmed}/`;
}

/**
 * A BlobStore on an S3 bucket (AWS or any S3-compatible server). Key `a/b` is the object
 * `<prefix>a/b`, so the bucket holds a plain Nix binary cache.
 *
 * Puts never let unverified bytes take a key: a body of at most one part is buffered and sent
 * with one PutObject after `beforeCommit`; a larger one goes up as a multipart upload whose
 * parts are read from the body with backpressure (at most `queueSize` parts in flight, one more
 * being filled) and which is completed only after `beforeCommit` succeeds. S3 shows no object
 * before CompleteMultipartUpload, and a failed, aborted or rejected put aborts its upload.
 */
export function createS3BlobStore(options: S3BlobStoreOptions): S3BlobStore {
  const { bucket } = options;
  const base = normalisePrefix(options.prefix);
  const partSize = options.partSize ?? 16 * MIB;
  const queueSize = options.queueSize ?? 4;
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE) {
    throw new NarhubError('CONFIG_INVALID', `storage.partSize must be at least ${MIN_PART_SIZE} bytes`);
  }
  if (!Number.isSafeInteger(queueSize) || queueSize < 1)
    throw new NarhubError('CONFIG_INVALID', 'storage.queueSize must be at least 1');

  // Keep-alive sockets, enough for several puts' parts and many concurrent reads.
  const agentOptions = { keepAlive: true, maxSockets: Math.max(64, queueSize * 8) };
  const client = new S3Client({
    region: options.region,
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    forcePathStyle: options.forcePathStyle ?? false,
    ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
    requestHandler: { httpAgent: new HttpAgent(agentOptions), httpsAgent: new HttpsAgent(agentOptions) },
  });

  const stats: S3BufferStats = { buffered: 0, peak: 0 };
  const hold = (n: number) => {
    stats.buffered += n;
    if (stats.buffered > stats.peak) stats.peak = stats.buffered;
  };
  const release = (n: number) => {
    stats.buffered -= n;
  };

  function objectKey(key: string): string {
    assertValidKey(key);
    return base + key;
  }

  /** Runs one S3 request of ours, reporting its failure as STORAGE_ERROR (aborts stay aborts). */
  async function s3<T>(what: string, key: string, signal: AbortSignal | undefined, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (signal?.aborted) throw abortError(signal);
      throw storageError(what, key, err);
    }
  }

  async function put(key: string, body: Body, opts: BlobPutOptions = {}): Promise<BlobInfo> {
    const Key = objectKey(key);
    const { signal } = opts;
    signal?.throwIfAborted();
    // One part size per put: a known, huge size gets parts big enough to stay within 10,000.
    const size = opts.size;
    const thisPartSize =
      size !== undefined && size > partSize * MAX_PARTS ? Math.ceil(size / MAX_PARTS / MIB) * MIB : partSize;
    const reader = new PartReader(body, thisPartSize, signal, hold, release);
    const contentType = opts.contentType;
    try {
      const first = await reader.next();
      if (first === null || (await reader.atEnd())) {
        // One part or less: buffered whole, so the hook runs before anything is sent.
        const bytes = first ?? Buffer.alloc(0);
        try {
          checkSize(key, size, reader.total);
          await opts.beforeCommit?.();
          signal?.throwIfAborted();
          await s3('put', key, signal, () =>
            client.send(
              new PutObjectCommand({
                Bucket: bucket,
                Key,
                Body: bytes,
                ContentLength: bytes.byteLength,
                ...(contentType ? { ContentType: contentType } : {}),
              }),
              signal ? { abortSignal: signal } : {},
            ),
          );
        } finally {
          release(bytes.byteLength);
        }
        return { size: reader.total };
      }
      return await putMultipart(key, Key, reader, first, opts);
    } catch (err) {
      reader.destroy();
      throw err;
    }
  }

  async function putMultipart(
    key: string,
    Key: string,
    reader: PartReader,
    first: Buffer,
    opts: BlobPutOptions,
  ): Promise<BlobInfo> {
    const { signal } = opts;
    // Our own controller stops in-flight parts when any part, the body or the caller fails.
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const checksummed = (await client.config.requestChecksumCalculation()) === 'WHEN_SUPPORTED';
    let uploadId: string | undefined;
    const inFlight = new Set<Promise<void>>();
    const done: CompletedPart[] = [];
    let failure: { err: unknown } | undefined;
    let hookError: { err: unknown } | undefined;
    let part: Buffer | null = first;
    try {
      const created = await s3('create multipart upload', key, signal, () =>
        client.send(
          new CreateMultipartUploadCommand({
            Bucket: bucket,
            Key,
            ...(opts.contentType ? { ContentType: opts.contentType } : {}),
            ...(checksummed ? { ChecksumAlgorithm: 'CRC32' } : {}),
          }),
          { abortSignal: stop.signal },
        ),
      );
      uploadId = created.UploadId;
      if (!uploadId)
        throw new NarhubError(
          'STORAGE_ERROR',
          `S3 create multipart upload for ${JSON.stringify(key)} returned no UploadId`,
        );
      const UploadId = uploadId;

      for (let partNumber = 1; part !== null; partNumber++) {
        if (partNumber > MAX_PARTS) {
          throw new NarhubError(
            'STORAGE_ERROR',
            `blob ${key} needs more than ${MAX_PARTS} parts of ${part.byteLength} bytes: raise storage.partSize`,
          );
        }
        const bytes: Buffer = part;
        const PartNumber = partNumber;
        const sent: Promise<void> = s3('upload part', key, signal, () =>
          client.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key,
              UploadId,
              PartNumber,
              Body: bytes,
              ContentLength: bytes.byteLength,
            }),
            {
              abortSignal: stop.signal,
            },
          ),
        )
          .then((res) => {
            if (!res.ETag)
              throw new NarhubError(
                'STORAGE_ERROR',
                `S3 upload part ${PartNumber} of ${JSON.stringify(key)} returned no ETag`,
              );
            done.push({
              PartNumber,
              ETag: res.ETag,
              ...(res.ChecksumCRC32 ? { ChecksumCRC32: res.ChecksumCRC32 } : {}),
            });
          })
          .catch((err: unknown) => {
            failure ??= { err };
            stop.abort();
          })
          .finally(() => {
            release(bytes.byteLength);
            inFlight.delete(sent);
          });
        inFlight.add(sent);
        part = null;
        // Backpressure: read the next part only once a slot is free.
        while (inFlight.size >= queueSize && failure === undefined) await Promise.race(inFlight);
        if (failure) throw failure.err;
        part = await reader.next(stop.signal);
      }
      while (inFlight.size > 0) await Promise.race(inFlight);
      if (failure) throw failure.err;

      checkSize(key, opts.size, reader.total);
      // Every byte is in S3 but under no key yet: the caller's last word decides.
      try {
        await opts.beforeCommit?.();
      } catch (err) {
        hookError = { err };
        throw err;
      }
      signal?.throwIfAborted();
      done.sort((a, b) => a.PartNumber! - b.PartNumber!);
      await s3('complete multipart upload', key, signal, () =>
        client.send(
          new CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts: done } }),
          {
            abortSignal: stop.signal,
          },
        ),
      );
      uploadId = undefined;
      return { size: reader.total };
    } catch (err) {
      stop.abort();
      if (part !== null) release(part.byteLength);
      await Promise.allSettled([...inFlight]);
      if (uploadId !== undefined) {
        const UploadId = uploadId;
        // Best effort: S3 keeps the parts (and bills them) until the upload is aborted.
        await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId })).catch(() => undefined);
      }
      // The body's and the hook's own errors pass through unchanged; then the caller's abort;
      // then whatever failed first (not the aborts our own stop caused in the other parts).
      if (err === reader.bodyError || err === hookError?.err) throw err;
      if (signal?.aborted) throw abortError(signal);
      throw failure !== undefined && isAbort(err) ? failure.err : err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async function get(key: string, opts: BlobGetOptions = {}): Promise<BlobRead | null> {
    const Key = objectKey(key);
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
      res = await client.send(
        new GetObjectCommand({ Bucket: bucket, Key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }),
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
      if (range === undefined) return withSignal({ stream, size: length, totalSize: length }, signal);
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.ContentRange ?? '');
      if (!m)
        throw new NarhubError(
          'STORAGE_ERROR',
          `S3 get of ${JSON.stringify(key)} with a range returned Content-Range ${JSON.stringify(res.ContentRange)}`,
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
      const trimmed = gotEnd > range.end ? take(stream, size) : stream;
      return withSignal({ stream: trimmed, size, totalSize }, signal);
    } catch (err) {
      stream.destroy();
      throw err;
    }
  }

  async function statKey(key: string): Promise<BlobInfo | null> {
    const Key = objectKey(key);
    try {
      const res = await client.send(new HeadObjectCommand({ Bucket: bucket, Key }));
      return { size: res.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw storageError('stat', key, err);
    }
  }

  async function deleteKey(key: string): Promise<void> {
    const Key = objectKey(key);
    await s3('delete', key, undefined, () => client.send(new DeleteObjectCommand({ Bucket: bucket, Key })));
  }

  async function* list(prefix: string): AsyncGenerator<string> {
    let token: string | undefined;
    do {
      const ContinuationToken = token;
      const res = await s3('list', prefix, undefined, () =>
        client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
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

  async function presignGet(key: string, presign: BlobPresignOptions): Promise<string> {
    const Key = objectKey(key);
    const { expiresIn } = presign;
    if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > MAX_PRESIGN_SECONDS) {
      throw new NarhubError(
        'CONFIG_INVALID',
        `a presigned URL must expire within 1-${MAX_PRESIGN_SECONDS} seconds, not ${expiresIn}`,
      );
    }
    return s3('presign', key, undefined, () =>
      getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key }), { expiresIn }),
    );
  }

  return {
    kind: 's3',
    put,
    get,
    stat: statKey,
    delete: deleteKey,
    list,
    presignGet,
    bufferStats: () => ({ ...stats }),
    async close() {
      client.destroy();
    },
  };
}

/**
 * Cuts a body into parts of exactly `partSize` bytes (the last may be shorter), pulling chunks
 * only when asked: memory is one part being filled plus at most one chunk read ahead.
 */
class PartReader {
  /** Bytes the body yielded so far. */
  total = 0;
  private readonly iterator: AsyncIterator<unknown>;
  private readonly readable: Readable | undefined;
  private chunks: Uint8Array[] = [];
  private chunkBytes = 0;
  private ended = false;
  /** Set when the body itself failed, so its error is reported as is. */
  bodyError: unknown;

  constructor(
    body: Body,
    private readonly partSize: number,
    private readonly signal: AbortSignal | undefined,
    private readonly hold: (n: number) => void,
    private readonly release: (n: number) => void,
  ) {
    if (body instanceof Uint8Array) {
      this.iterator = (body.byteLength === 0 ? [] : [body])[Symbol.iterator]() as unknown as AsyncIterator<unknown>;
      this.readable = undefined;
    } else {
      this.readable = body instanceof Readable ? body : undefined;
      this.iterator = body[Symbol.asyncIterator]() as AsyncIterator<unknown>;
    }
  }

  /** Pulls one chunk into the buffer; false at the end of the body. */
  private async pull(signal: AbortSignal | undefined): Promise<boolean> {
    if (this.ended) return false;
    let result: IteratorResult<unknown>;
    try {
      result = await raceAbort(Promise.resolve(this.iterator.next()), signal ?? this.signal);
    } catch (err) {
      if (!isAbort(err)) this.bodyError = err;
      throw err;
    }
    if (result.done) {
      this.ended = true;
      return false;
    }
    const chunk = result.value;
    if (!(chunk instanceof Uint8Array)) {
      throw new NarhubError('INTERNAL', `blob body yielded a ${typeof chunk}, not bytes`);
    }
    this.total += chunk.byteLength;
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk);
      this.chunkBytes += chunk.byteLength;
      this.hold(chunk.byteLength);
    }
    return true;
  }

  /** The next part, or null once the body is exhausted. */
  async next(signal?: AbortSignal): Promise<Buffer | null> {
    while (this.chunkBytes < this.partSize && (await this.pull(signal)));
    if (this.chunkBytes === 0) return null;
    const n = Math.min(this.partSize, this.chunkBytes);
    // One copy into a buffer of exactly the part's size; the chunks it came from are let go.
    const part = Buffer.allocUnsafe(n);
    this.hold(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const take = Math.min(chunk.byteLength, n - filled);
      part.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), filled);
      filled += take;
      if (take === chunk.byteLength) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(take);
    }
    this.chunkBytes -= n;
    this.release(n);
    return part;
  }

  /** Whether the body has no bytes left, reading ahead at most one chunk to find out. */
  async atEnd(): Promise<boolean> {
    while (this.chunkBytes === 0) if (!(await this.pull(undefined))) return true;
    return false;
  }

  /** Lets go of buffered chunks and stops the body (destroying a Readable, finishing a generator). */
  destroy(): void {
    this.release(this.chunkBytes);
    this.chunks = [];
    this.chunkBytes = 0;
    if (this.ended) return;
    this.ended = true;
    if (this.readable) this.readable.destroy();
    // A generator blocked in an await finishes once it resumes; nobody waits for that.
    else void Promise.resolve(this.iterator.return?.()).catch(() => undefined);
  }
}

function checkSize(key: string, expected: number | undefined, actual: number): void {
  if (expected !== undefined && expected !== actual) {
    throw new NarhubError('BAD_REQUEST', `blob body for ${key} was ${actual} bytes, expected ${expected}`);
  }
}

/** Rejects with an AbortError as soon as `signal` aborts; the raced promise is left to settle. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(abortError(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => undefined);
      reject(abortError(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** The error Node's own stream helpers reject with on an abort (`code: 'ABORT_ERR'`). */
function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), {
    name: 'AbortError',
    code: 'ABORT_ERR',
  });
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
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

function withSignal(read: BlobRead, signal: AbortSignal | undefined): BlobRead {
  if (signal !== undefined) addAbortSignal(signal, read.stream);
  return read;
}

function statusOf(err: unknown): number | undefined {
  const meta = (err as { $metadata?: { httpStatusCode?: unknown } } | undefined)?.$metadata;
  return typeof meta?.httpStatusCode === 'number' ? meta.httpStatusCode : undefined;
}

/** The key is absent (a missing bucket is a storage error: HEAD cannot tell, GET can). */
function isNotFound(err: unknown): boolean {
  const name = (err as { name?: unknown } | undefined)?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || (statusOf(err) === 404 && name !== 'NoSuchBucket');
}

function storageError(what: string, key: string, err: unknown): NarhubError {
  if (err instanceof NarhubError) return err;
  const name = (err as { name?: unknown } | undefined)?.name;
  const message = err instanceof Error ? err.message : String(err);
  return new NarhubError(
    'STORAGE_ERROR',
    `S3 ${what} failed for ${JSON.stringify(key)}: ${typeof name === 'string' ? `${name}: ` : ''}${message}`,
    {
      cause: err,
      details: { key, status: statusOf(err), name },
    },
  );
}
