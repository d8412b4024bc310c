// A real S3 API on 127.0.0.1 for tests: s3rver (a devDependency, so a missing install fails the
// tests rather than skipping them) on a free port, over a fresh temp directory, with one bucket.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { removeTree } from './tmp.js';

/** Anything that can run a function when the test (or suite) ends: a TestContext, or `suiteScope()`. */
export interface Scope {
  after(fn: () => unknown): void;
}

/** s3rver ships no types: the narrow shape used here, loaded through require. */
interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
}
type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface S3rverInstance {
  middleware: Middleware[];
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverInstance;
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;

/** s3rver's own names inside a bucket directory (lib/stores/filesystem.js). */
const UPLOADS_DIR = '._S3rver_uploads';

export const S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;
export const S3_REGION = 'us-east-1';

export interface S3Server {
  /** e.g. http://127.0.0.1:41234 */
  endpoint: string;
  bucket: string;
  /** s3rver's data directory: `<dir>/<bucket>/<key>._S3rver_object`. */
  dir: string;
  /**
   * Every request so far, as `METHOD /bucket/key [query names]`, e.g. `PUT /b/k [partNumber,uploadId]`
   * for an UploadPart: what the store really sent.
   */
  requests: string[];
  /** Multipart uploads started and neither completed nor aborted: `{ key, uploadId }`. */
  pendingUploads(): Promise<{ key: string; uploadId: string }[]>;
  /** Makes an upload look started at `when` (its Initiated in ListMultipartUploads). */
  ageUpload(uploadId: string, when: Date): Promise<void>;
  /** Options for createS3BlobStore (path style, the test credentials). */
  storeOptions(prefix?: string): {
    bucket: string;
    region: string;
    endpoint: string;
    forcePathStyle: true;
    prefix: string;
    credentials: typeof S3_CREDENTIALS;
  };
  /**
   * A narhub `storage` config for this server, credentials in files under `dir` (as a
   * deployment would have them), and extra settings merged in.
   */
  storageConfig(dir: string, extra?: Record<string, unknown>): Promise<Record<string, unknown>>;
  /**
   * From the `afterParts`-th UploadPart on, answer every request with `status` (S3's XML error
   * `InternalError` or `SlowDown`), as a failing S3 does, until `heal()`.
   */
  failFrom(fault: { status: 500 | 503; afterParts: number }): void;
  heal(): void;
  stop(): Promise<void>;
}

export interface S3Options {
  bucket?: string;
  /** s3rver's data directory, kept when the server stops (default: a fresh one, removed). */
  dir?: string;
  /** Default: a free one. */
  port?: number;
  /** Told each request as it arrives, in the form of `requests`. */
  onRequest?(request: string): void;
}

/**
 * Starts s3rver on 127.0.0.1 and a free port (or `opts.port`), silent, in a fresh temp directory
 * (or `opts.dir`), with `bucket` created; stops it and removes the directory it made when `scope`
 * ends.
 *
 * s3rver 3.7 lacks two calls narhub's tests need, so a small middleware in front adds them with
 * S3's semantics over s3rver's own upload directories: AbortMultipartUpload (DELETE
 * ?uploadId=…, drops the upload's parts) and ListMultipartUploads (GET /bucket?uploads). It
 * also applies S3's atomic overwrite to PutObject and CompleteMultipartUpload, which s3rver
 * writes in place: writes to one key are serialised, so racing writers never interleave bytes.
 */
export async function startS3(scope: Scope, opts: S3Options = {}): Promise<S3Server> {
  const bucket = opts.bucket ?? 'narhub-test';
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'narhub-s3rver-')));
  const ownDir = opts.dir === undefined;
  const uploadsDir = join(dir, bucket, UPLOADS_DIR);
  const server = new S3rver({
    address: '127.0.0.1',
    port: opts.port ?? 0,
    silent: true,
    directory: dir,
    // Path-style only: any Host header names no bucket.
    vhostBuckets: false,
    configureBuckets: [{ name: bucket, configs: [] }],
  });

  async function pendingUploads(): Promise<{ key: string; uploadId: string }[]> {
    return (await uploadsWithDates()).map(({ key, uploadId }) => ({ key, uploadId }));
  }

  /** Each upload with when it started: its directory's mtime (a test may set it back to age it). */
  async function uploadsWithDates(): Promise<{ key: string; uploadId: string; initiated: Date }[]> {
    if (!existsSync(uploadsDir)) return [];
    const out: { key: string; uploadId: string; initiated: Date }[] = [];
    for (const uploadId of await readdir(uploadsDir)) {
      const key = await readFile(join(uploadsDir, uploadId, 'key'), 'utf8').catch(() => '?');
      const initiated = (await stat(join(uploadsDir, uploadId)).catch(() => undefined))?.mtime ?? new Date(0);
      out.push({ key, uploadId, initiated });
    }
    return out;
  }

  const writing = new Map<string, Promise<void>>();
  const requests: string[] = [];
  let fault: { status: 500 | 503; afterParts: number } | undefined;
  let parts = 0;
  const faults: Middleware = async (ctx, next) => {
    if (ctx.method === 'PUT' && 'partNumber' in ctx.query) parts++;
    if (fault === undefined || parts < fault.afterParts) return next();
    const code = fault.status === 503 ? 'SlowDown' : 'InternalError';
    ctx.status = fault.status;
    ctx.type = 'application/xml';
    ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected</Message></Error>`;
  };
  const missingCalls: Middleware = async (ctx, next) => {
    const request = `${ctx.method} ${decodeURIComponent(ctx.path)} [${Object.keys(ctx.query).sort().join(',')}]`;
    requests.push(request);
    opts.onRequest?.(request);
    const [, bucketName = '', ...rest] = ctx.path.split('/');
    const key = decodeURIComponent(rest.join('/'));
    const uploadId = typeof ctx.query.uploadId === 'string' ? ctx.query.uploadId : undefined;
    if (bucketName === bucket && key !== '' && ctx.method === 'DELETE' && uploadId !== undefined) {
      const upload = join(uploadsDir, uploadId);
      if (!/^[A-Za-z0-9_-]+$/.test(uploadId) || !existsSync(upload)) {
        ctx.status = 404;
        ctx.type = 'application/xml';
        ctx.body =
          `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified ` +
          `upload does not exist.</Message></Error>`;
        return;
      }
      await rm(upload, { recursive: true, force: true });
      ctx.status = 204;
      ctx.body = '';
      return;
    }
    if (bucketName === bucket && key === '' && ctx.method === 'GET' && 'uploads' in ctx.query) {
      const prefix = typeof ctx.query.prefix === 'string' ? ctx.query.prefix : '';
      const uploads = (await uploadsWithDates())
        .filter((u) => u.key.startsWith(prefix))
        .map(
          (u) =>
            `<Upload><Key>${escapeXml(u.key)}</Key><UploadId>${u.uploadId}</UploadId>` +
            `<Initiated>${u.initiated.toISOString()}</Initiated></Upload>`,
        )
        .join('');
      ctx.status = 200;
      ctx.type = 'application/xml';
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult><Bucket>${bucket}</Bucket>` +
        `<IsTruncated>false</IsTruncated>${uploads}</ListMultipartUploadsResult>`;
      return;
    }
    const isPut = ctx.method === 'PUT' && uploadId === undefined && key !== '';
    const isComplete = ctx.method === 'POST' && uploadId !== undefined;
    if (isPut || isComplete) {
      // One writer per key at a time (complete names its key in the upload's directory).
      const target = isComplete ? await readFile(join(uploadsDir, uploadId!, 'key'), 'utf8').catch(() => key) : key;
      const before = writing.get(target) ?? Promise.resolve();
      const mine = before.then(() => next());
      const tail = mine.then(
        () => undefined,
        () => undefined,
      );
      writing.set(target, tail);
      try {
        await mine;
      } finally {
        if (writing.get(target) === tail) writing.delete(target);
      }
      return;
    }
    return next();
  };
  server.middleware.unshift(missingCalls);
  server.middleware.unshift(faults);

  // s3rver makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3 (Node 17+) refuses,
  // so every truncated V2 listing fails. This runs its V1 listing (`marker`) instead and answers
  // in V2's shape, the token being the last key of the page. It sits just before the router,
  // after s3rver's XML encoder, so it sees the result as an object.
  const listV2: Middleware = async (ctx, next) => {
    const [, , ...rest] = ctx.path.split('/');
    if (ctx.method !== 'GET' || rest.join('/') !== '' || ctx.query['list-type'] !== '2') return next();
    const {
      'list-type': _type,
      'continuation-token': token,
      'start-after': startAfter,
      'fetch-owner': _owner,
      ...query
    } = ctx.query;
    const from = typeof token === 'string' ? Buffer.from(token, 'base64url').toString('utf8') : startAfter;
    ctx.query = typeof from === 'string' && from !== '' ? { ...query, marker: from } : query;
    await next();
    const result = (ctx.body as { ListBucketResult?: Record<string, unknown> } | undefined)?.ListBucketResult;
    if (result === undefined) return;
    const contents = (result.Contents ?? []) as { Key: string }[];
    delete result.Marker;
    delete result.NextMarker;
    result.KeyCount = contents.length;
    if (typeof token === 'string') result.ContinuationToken = token;
    if (result.IsTruncated && contents.length > 0)
      result.NextContinuationToken = Buffer.from(contents[contents.length - 1]!.Key).toString('base64url');
  };
  server.middleware.splice(server.middleware.length - 1, 0, listV2);

  let address: AddressInfo;
  try {
    address = await server.run();
  } catch (err) {
    if (ownDir) await removeTree(dir);
    throw err;
  }
  const endpoint = `http://127.0.0.1:${address.port}`;

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await server.close().catch(() => undefined);
      if (ownDir) await removeTree(dir);
    })());
  scope.after(stop);

  return {
    endpoint,
    bucket,
    dir,
    requests,
    pendingUploads,
    ageUpload: (uploadId, when) => utimes(join(uploadsDir, uploadId), when, when),
    storeOptions: (prefix = '') => ({
      bucket,
      region: S3_REGION,
      endpoint,
      forcePathStyle: true,
      prefix,
      credentials: S3_CREDENTIALS,
    }),
    storageConfig: (credsDir, extra = {}) => s3StorageConfig(endpoint, bucket, credsDir, extra),
    failFrom(f) {
      parts = 0;
      fault = f;
    },
    heal() {
      fault = undefined;
    },
    stop,
  };
}

/**
 * A narhub `storage` config for the S3 server at `endpoint`, credentials in files under `credsDir`
 * (as a deployment would have them), and extra settings merged in.
 */
export async function s3StorageConfig(
  endpoint: string,
  bucket: string,
  credsDir: string,
  extra: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const accessKeyIdFile = join(credsDir, 's3-access-key-id');
  const secretAccessKeyFile = join(credsDir, 's3-secret-access-key');
  // Trailing newlines, as `echo … > file` leaves them: the store trims.
  await writeFile(accessKeyIdFile, `${S3_CREDENTIALS.accessKeyId}\n`, { mode: 0o600 });
  await writeFile(secretAccessKeyFile, `${S3_CREDENTIALS.secretAccessKey}\n`, { mode: 0o600 });
  return {
    type: 's3',
    bucket,
    region: S3_REGION,
    endpoint,
    forcePathStyle: true,
    accessKeyIdFile,
    secretAccessKeyFile,
    ...extra,
  };
}

/** A Scope for a whole `describe` (or file): call `run()` from its `after` hook. */
export function suiteScope(): Scope & { run(): Promise<void> } {
  const fns: (() => unknown)[] = [];
  return {
    after: (fn) => void fns.push(fn),
    async run() {
      for (const fn of fns.splice(0).reverse()) await fn();
    },
  };
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** An AWS SDK client of `server` with the test credentials, destroyed when `scope` ends. */
export function sdkClient(scope: { after(fn: () => unknown): void }, server: { endpoint: string }): S3Client {
  const client = new S3Client({
    region: S3_REGION,
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials: S3_CREDENTIALS,
  });
  scope.after(() => client.destroy());
  return client;
}
