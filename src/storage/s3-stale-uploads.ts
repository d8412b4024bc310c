import { AbortMultipartUploadCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { type S3Context, s3Request } from './s3-request.js';

/**
 * Aborts the multipart uploads under `prefix` that were started more than `olderThanMs` ago and
 * that no put of this process is driving: what a narhub killed mid-upload left behind. S3 keeps
 * (and bills) an upload's parts until it is completed or aborted, and ListMultipartUploads does
 * not say which process started one, so only age can tell that another live process (a second
 * server, an admin command on the same bucket) no longer owns it. Returns how many were aborted.
 */
export async function abortStaleUploads(ctx: S3Context, prefix: string, olderThanMs: number): Promise<number> {
  const cutoff = Date.now() - olderThanMs;
  let aborted = 0;
  let KeyMarker: string | undefined;
  let UploadIdMarker: string | undefined;
  for (;;) {
    const page = await s3Request('list multipart uploads', prefix, undefined, () =>
      ctx.client.send(
        new ListMultipartUploadsCommand({
          Bucket: ctx.bucket,
          ...(prefix !== '' ? { Prefix: prefix } : {}),
          ...(KeyMarker !== undefined ? { KeyMarker } : {}),
          ...(UploadIdMarker !== undefined ? { UploadIdMarker } : {}),
        }),
      ),
    );
    for (const upload of page.Uploads ?? []) {
      const { Key, UploadId, Initiated } = upload;
      if (Key === undefined || UploadId === undefined || Initiated === undefined) continue;
      if (!Key.startsWith(prefix) || ctx.uploads.has(UploadId) || Initiated.getTime() > cutoff) continue;
      await s3Request('abort multipart upload', Key, undefined, () =>
        ctx.client.send(new AbortMultipartUploadCommand({ Bucket: ctx.bucket, Key, UploadId })),
      ).then(
        () => aborted++,
        // Completed or aborted meanwhile by whoever owned it after all.
        (err: unknown) => {
          if (!/NoSuchUpload/.test(String((err as Error).cause ?? err))) throw err;
        },
      );
    }
    if (page.IsTruncated !== true || page.NextKeyMarker === undefined) return aborted;
    KeyMarker = page.NextKeyMarker;
    UploadIdMarker = page.NextUploadIdMarker;
  }
}
