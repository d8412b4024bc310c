import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { NarhubError } from '../errors.js';
import { abortError, isAbort } from '../io/abort.js';
import type { BlobInfo, BlobPutOptions } from './blob-store.js';
import type { PartReader } from './part-reader.js';
import { checkSize, type S3Context, s3Request } from './s3-request.js';

/** S3's ceiling on parts per multipart upload. */
export const MAX_PARTS = 10_000;

/**
 * The parts of one multipart upload on their way: at most `queueSize` at once. The first
 * failure stops the others (through `stop`) and is kept to be reported.
 */
class PartsInFlight {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly done: CompletedPart[] = [];
  failure: { err: unknown } | undefined;

  constructor(
    private readonly ctx: S3Context,
    private readonly key: string,
    private readonly target: { Key: string; UploadId: string },
    private readonly signal: AbortSignal | undefined,
    private readonly stop: AbortController,
  ) {}

  send(bytes: Buffer, PartNumber: number): void {
    const { ctx, key, target } = this;
    const sent: Promise<void> = s3Request('upload part', key, this.signal, () =>
      ctx.client.send(
        new UploadPartCommand({
          Bucket: ctx.bucket,
          ...target,
          PartNumber,
          Body: bytes,
          ContentLength: bytes.byteLength,
        }),
        { abortSignal: this.stop.signal },
      ),
    )
      .then((res) => {
        if (!res.ETag)
          throw new NarhubError(
            'STORAGE_ERROR',
            `S3 upload part ${PartNumber} of ${JSON.stringify(key)} returned no ETag`,
          );
        this.done.push({
          PartNumber,
          ETag: res.ETag,
          ...(res.ChecksumCRC32 ? { ChecksumCRC32: res.ChecksumCRC32 } : {}),
        });
      })
      .catch((err: unknown) => {
        this.failure ??= { err };
        this.stop.abort();
      })
      .finally(() => {
        ctx.meter.release(bytes.byteLength);
        this.inFlight.delete(sent);
      });
    this.inFlight.add(sent);
  }

  /** Backpressure: resolves once another part may be sent; throws the first failure. */
  async slot(): Promise<void> {
    while (this.inFlight.size >= this.ctx.queueSize && this.failure === undefined) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure.err;
  }

  /** Every part sent, in order; throws the first failure. */
  async all(): Promise<CompletedPart[]> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure.err;
    return [...this.done].sort((a, b) => a.PartNumber! - b.PartNumber!);
  }

  settled(): Promise<unknown> {
    return Promise.allSettled([...this.inFlight]);
  }
}

/**
 * A put of more than one part: parts read from the body with backpressure, and the upload
 * completed only after `beforeCommit` succeeds (S3 shows no object before
 * CompleteMultipartUpload). A failed, aborted or rejected put aborts its upload.
 */
export async function putMultipart(
  ctx: S3Context,
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
  let uploadId: string | undefined;
  /** Ours while this put runs, so the sweep of stale uploads (s3-stale-uploads.ts) spares it. */
  let created: string | undefined;
  let parts: PartsInFlight | undefined;
  let hookError: { err: unknown } | undefined;
  let part: Buffer | null = first;
  try {
    uploadId = await createUpload(ctx, key, Key, opts.contentType, signal, stop.signal);
    const UploadId = uploadId;
    ctx.uploads.add(UploadId);
    created = UploadId;
    parts = new PartsInFlight(ctx, key, { Key, UploadId }, signal, stop);
    for (let partNumber = 1; part !== null; partNumber++) {
      if (partNumber > MAX_PARTS) {
        throw new NarhubError(
          'STORAGE_ERROR',
          `blob ${key} needs more than ${MAX_PARTS} parts of ${part.byteLength} bytes: raise storage.partSize`,
        );
      }
      parts.send(part, partNumber);
      part = null;
      await parts.slot();
      part = await reader.next(stop.signal);
    }
    const done = await parts.all();

    checkSize(key, opts.size, reader.total);
    // Every byte is in S3 but under no key yet: the caller's last word decides.
    try {
      await opts.beforeCommit?.();
    } catch (err) {
      hookError = { err };
      throw err;
    }
    signal?.throwIfAborted();
    await s3Request('complete multipart upload', key, signal, () =>
      ctx.client.send(
        new CompleteMultipartUploadCommand({ Bucket: ctx.bucket, Key, UploadId, MultipartUpload: { Parts: done } }),
        { abortSignal: stop.signal },
      ),
    );
    uploadId = undefined;
    return { size: reader.total };
  } catch (err) {
    stop.abort();
    if (part !== null) ctx.meter.release(part.byteLength);
    await parts?.settled();
    if (uploadId !== undefined) {
      const UploadId = uploadId;
      // Best effort: S3 keeps the parts (and bills them) until the upload is aborted.
      await ctx.client
        .send(new AbortMultipartUploadCommand({ Bucket: ctx.bucket, Key, UploadId }))
        .catch(() => undefined);
    }
    // The body's and the hook's own errors pass through unchanged; then the caller's abort;
    // then whatever failed first (not the aborts our own stop caused in the other parts).
    if (err === reader.bodyError || err === hookError?.err) throw err;
    if (signal?.aborted) throw abortError(signal);
    const failure = parts?.failure;
    throw failure !== undefined && isAbort(err) ? failure.err : err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (created !== undefined) ctx.uploads.delete(created);
  }
}

async function createUpload(
  ctx: S3Context,
  key: string,
  Key: string,
  contentType: string | undefined,
  signal: AbortSignal | undefined,
  stop: AbortSignal,
): Promise<string> {
  const checksummed = (await ctx.client.config.requestChecksumCalculation()) === 'WHEN_SUPPORTED';
  const created = await s3Request('create multipart upload', key, signal, () =>
    ctx.client.send(
      new CreateMultipartUploadCommand({
        Bucket: ctx.bucket,
        Key,
        ...(contentType ? { ContentType: contentType } : {}),
        ...(checksummed ? { ChecksumAlgorithm: 'CRC32' } : {}),
      }),
      { abortSignal: stop },
    ),
  );
  if (!created.UploadId)
    throw new NarhubError(
      'STORAGE_ERROR',
      `S3 create multipart upload for ${JSON.stringify(key)} returned no UploadId`,
    );
  return created.UploadId;
}
