// The S3 backend against a real S3 API (s3rver): the whole BlobStore contract, with a part size
// small enough that multipart uploads really happen, plus what only an object store has.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTick } from 'node:timers/promises';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { NarhubError } from '../../../src/errors.js';
import { createS3BlobStore, type S3BlobStore } from '../../../src/storage/s3-blob-store.js';
import { sdkClient, startS3, suiteScope, type S3Server } from '../../helpers/s3.js';
import { blobStoreContract } from './blob-store-contract.js';

const MIB = 1024 * 1024;
/** The smallest part S3 allows: a 12 MB body is then 3 parts. */
const PART = 5 * MIB;
const QUEUE = 2;

const scope = suiteScope();
let server: S3Server;
let prefixes = 0;
before(async () => {
  server = await startS3(scope);
});
after(() => scope.run());

function makeStore(prefix = `t${++prefixes}/`, extra: { partSize?: number; queueSize?: number } = {}): S3BlobStore {
  return createS3BlobStore({ ...server.storeOptions(prefix), partSize: PART, queueSize: QUEUE, ...extra });
}

/** Fails the test if a put left a multipart upload behind (the store must abort its own). */
async function assertNoUploadsLeft(): Promise<void> {
  assert.deepEqual(await server.pendingUploads(), [], 'no multipart upload is left behind');
}

// Each contract test gets its own key prefix in the one bucket, so `list('')` sees only its keys.
blobStoreContract('s3', async () => ({ store: makeStore(), cleanup: assertNoUploadsLeft }));

async function* chunked(bytes: Buffer, chunk = 300_000, onDone?: () => void): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += chunk) {
    yield bytes.subarray(i, Math.min(bytes.length, i + chunk));
    if (i % (chunk * 8) === 0) await nextTick();
  }
  onDone?.();
}

async function content(store: S3BlobStore, key: string): Promise<Buffer | null> {
  const read = await store.get(key);
  return read && Buffer.concat(await read.stream.toArray());
}

function since(mark: number): string[] {
  return server.requests.slice(mark);
}

describe('S3 blob store', () => {
  it('uploads a 12 MB body as 3 parts and completes only after beforeCommit', async (t) => {
    const store = makeStore();
    t.after(() => store.close());
    await store.put('c/nar/big.nar', Buffer.from('old'));
    const body = randomBytes(12 * 1000 * 1000);
    const mark = server.requests.length;
    let bodyDone = false;
    let seenAtHook: string[] = [];
    const info = await store.put(
      'c/nar/big.nar',
      chunked(body, 300_000, () => (bodyDone = true)),
      {
        beforeCommit: async () => {
          assert.equal(bodyDone, true);
          seenAtHook = since(mark);
          // Every part is up, yet the key still shows the old object.
          assert.deepEqual(await content(store, 'c/nar/big.nar'), Buffer.from('old'));
        },
      },
    );
    assert.deepEqual(info, { size: body.length });
    assert.equal(
      seenAtHook.filter((r) => r.startsWith('PUT') && r.includes('partNumber')).length,
      3,
      seenAtHook.join('\n'),
    );
    assert.equal(
      seenAtHook.filter((r) => r.startsWith('POST') && r.includes('uploadId')).length,
      0,
      'not completed before the hook',
    );
    const all = since(mark);
    assert.equal(
      all.filter((r) => r.startsWith('POST') && r.includes('uploads')).length,
      1,
      'one CreateMultipartUpload',
    );
    assert.equal(
      all.filter((r) => r.startsWith('POST') && r.includes('uploadId')).length,
      1,
      'one CompleteMultipartUpload',
    );
    assert.ok((await content(store, 'c/nar/big.nar'))!.equals(body));
    await assertNoUploadsLeft();
  });

  it('sends a body of at most one part as one PutObject, after beforeCommit', async (t) => {
    const store = makeStore();
    t.after(() => store.close());
    for (const size of [0, 1, PART - 1, PART]) {
      const body = randomBytes(size);
      const mark = server.requests.length;
      let hookSawRequests = -1;
      await store.put('c/one', chunked(body, 100_000), {
        beforeCommit: async () => void (hookSawRequests = since(mark).length),
      });
      assert.equal(hookSawRequests, 0, `nothing was sent before the hook (${size} bytes)`);
      const writes = since(mark).filter((r) => !r.startsWith('GET'));
      assert.equal(writes.length, 1, `one request for ${size} bytes: ${writes.join(', ')}`);
      assert.match(writes[0]!, /^PUT \/[^ ]+\/c\/one \[[^\]]*\]$/);
      assert.doesNotMatch(writes[0]!, /partNumber|uploadId/);
      assert.ok((await content(store, 'c/one'))!.equals(body), `${size} bytes round-trip`);
    }
  });

  it('aborts the multipart upload when beforeCommit rejects', async (t) => {
    const store = makeStore();
    t.after(() => store.close());
    await store.put('c/k', Buffer.from('old'));
    const mismatch = new NarhubError('FILE_HASH_MISMATCH', 'not the promised bytes');
    await assert.rejects(
      store.put('c/k', chunked(randomBytes(12 * 1000 * 1000)), {
        beforeCommit: async () => {
          throw mismatch;
        },
      }),
      (err) => err === mismatch,
    );
    assert.deepEqual(await content(store, 'c/k'), Buffer.from('old'));
    await assert.rejects(
      store.put('c/fresh', chunked(randomBytes(11 * 1000 * 1000)), {
        beforeCommit: async () => {
          throw mismatch;
        },
      }),
      (err) => err === mismatch,
    );
    assert.equal(await store.stat('c/fresh'), null);
    await assertNoUploadsLeft();
  });

  it('aborts the multipart upload when the body fails after some parts, passing its error on', async (t) => {
    const store = makeStore();
    t.after(() => store.close());
    const boom = new Error('source failed');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield* chunked(randomBytes(11 * 1000 * 1000));
      throw boom;
    }
    await assert.rejects(store.put('c/k', failing()), (err) => err === boom);
    const erroring = Readable.from(failing());
    await assert.rejects(store.put('c/k2', erroring), (err) => err === boom);
    assert.equal(erroring.destroyed, true);
    assert.equal(await store.stat('c/k'), null);
    assert.equal(await store.stat('c/k2'), null);
    await assertNoUploadsLeft();
  });

  it('aborts the multipart upload when the signal aborts midway', async (t) => {
    const store = makeStore();
    t.after(() => store.close());
    const controller = new AbortController();
    let sent = 0;
    async function* slow(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 200; i++) {
        if (sent >= 3 * PART) controller.abort();
        const chunk = randomBytes(256 * 1024);
        sent += chunk.length;
        yield chunk;
        await nextTick();
      }
    }
    await assert.rejects(
      store.put('c/k', slow(), { signal: controller.signal }),
      (err: Error) => err.name === 'AbortError',
    );
    assert.ok(sent < 200 * 256 * 1024, 'the body was not read to its end');
    assert.equal(await store.stat('c/k'), null);
    await assertNoUploadsLeft();
  });

  it('reports S3 failures as STORAGE_ERROR', async (t) => {
    const store = createS3BlobStore({ ...server.storeOptions(), bucket: 'no-such-bucket', partSize: PART });
    t.after(() => store.close());
    const isStorageError = (err: unknown) => err instanceof NarhubError && err.code === 'STORAGE_ERROR';
    await assert.rejects(store.put('c/k', Buffer.from('x')), isStorageError);
    await assert.rejects(store.put('c/big', chunked(randomBytes(6 * MIB))), isStorageError);
    await assert.rejects(store.get('c/k'), isStorageError);
    await assert.rejects(async () => {
      for await (const key of store.list('')) void key;
    }, isStorageError);
    // s3rver checks the access key id (not SigV4 signatures themselves).
    const stranger = createS3BlobStore({
      ...server.storeOptions(),
      credentials: { accessKeyId: 'NOBODY', secretAccessKey: 'sekrit-value' },
    });
    t.after(() => stranger.close());
    await assert.rejects(stranger.put('c/k', Buffer.from('x')), (err: unknown) => {
      assert.ok(isStorageError(err), String(err));
      assert.doesNotMatch((err as Error).message, /sekrit-value/, 'no secret in the message');
      return true;
    });
    await assertNoUploadsLeft();
  });

  it('honours the key prefix', async (t) => {
    const client = sdkClient(t, server);
    const prefixed = createS3BlobStore({ ...server.storeOptions('deploy/narhub'), partSize: PART });
    const other = createS3BlobStore({ ...server.storeOptions('deploy/other/'), partSize: PART });
    t.after(() => prefixed.close());
    t.after(() => other.close());
    await prefixed.put('main/nix-cache-info', Buffer.from('StoreDir: /nix/store\n'));
    await prefixed.put('main/nar/x.nar', chunked(randomBytes(6 * MIB)));
    await other.put('main/nix-cache-info', Buffer.from('other'));

    const res = await client.send(new ListObjectsV2Command({ Bucket: server.bucket, Prefix: 'deploy/' }));
    assert.deepEqual((res.Contents ?? []).map((o) => o.Key).sort(), [
      'deploy/narhub/main/nar/x.nar',
      'deploy/narhub/main/nix-cache-info',
      'deploy/other/main/nix-cache-info',
    ]);
    const listed: string[] = [];
    for await (const key of prefixed.list('')) listed.push(key);
    assert.deepEqual(listed.sort(), ['main/nar/x.nar', 'main/nix-cache-info']);
    assert.deepEqual(await content(other, 'main/nix-cache-info'), Buffer.from('other'));
    await prefixed.delete('main/nar/x.nar');
    assert.equal(await prefixed.stat('main/nar/x.nar'), null);
  });

  it('lists across pages', async (t) => {
    const store = makeStore();
    t.after(() => store.close());
    const keys = Array.from({ length: 1005 }, (_, i) => `c/log/${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 50)
      await Promise.all(keys.slice(i, i + 50).map((k) => store.put(k, Buffer.from(k))));
    const listed: string[] = [];
    for await (const key of store.list('c/')) listed.push(key);
    assert.deepEqual(listed.sort(), keys);
  });

  it('presigns GET URLs that fetch the bytes without credentials, ranges included', async (t) => {
    const store = makeStore();
    t.after(() => store.close());
    const bytes = randomBytes(300_000);
    await store.put('c/nar/p.nar', bytes);
    const url = await store.presignGet('c/nar/p.nar', { expiresIn: 60 });
    assert.match(url, /X-Amz-Signature=/);
    assert.ok(url.startsWith(`${server.endpoint}/${server.bucket}/`), url);
    const whole = await fetch(url);
    assert.equal(whole.status, 200);
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes));
    const part = await fetch(url, { headers: { range: 'bytes=1000-1999' } });
    assert.equal(part.status, 206);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(1000, 2000)));
    await assert.rejects(store.presignGet('c/nar/p.nar', { expiresIn: 604_801 }), NarhubError);
    await assert.rejects(store.presignGet('../x', { expiresIn: 60 }), NarhubError);
  });

  it('keeps memory bounded while streaming a 200 MB body', async (t) => {
    const store = makeStore(undefined, { queueSize: 2 });
    t.after(() => store.close());
    const total = 200 * MIB;
    const chunk = randomBytes(1 * MIB);
    const written = createHash('sha256');
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    async function* body(): AsyncGenerator<Uint8Array> {
      for (let sent = 0; sent < total; sent += chunk.length) {
        // A fresh buffer each time, as a network stream would hand out.
        const copy = Buffer.from(chunk);
        copy.writeUInt32BE(sent / chunk.length, 0);
        written.update(copy);
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
        yield copy;
      }
    }
    assert.deepEqual(await store.put('c/nar/huge.nar', body()), { size: total });
    const { peak, buffered } = store.bufferStats();
    assert.equal(buffered, 0, 'every buffer was let go');
    // queueSize parts in flight, one being filled, and the chunks it is filled from.
    assert.ok(peak <= (2 + 2) * PART, `peak buffered ${peak} bytes`);
    assert.ok(rssPeak - rssBefore < 150 * MIB, `rss grew by ${((rssPeak - rssBefore) / MIB).toFixed(0)} MiB`);

    const read = await store.get('c/nar/huge.nar');
    assert.ok(read);
    assert.equal(read.size, total);
    const seen = createHash('sha256');
    for await (const c of read.stream) seen.update(c as Buffer);
    assert.equal(seen.digest('hex'), written.digest('hex'));
    await store.delete('c/nar/huge.nar');
    await assertNoUploadsLeft();
  });

  it('has no multipart uploads in ListMultipartUploads after all of the above', async (t) => {
    const client = sdkClient(t, server);
    const res = await client.send(new ListMultipartUploadsCommand({ Bucket: server.bucket }));
    assert.deepEqual(res.Uploads ?? [], []);
  });
});

describe('S3 store options', () => {
  it('refuses a part size below S3 minimum and an invalid prefix', () => {
    assert.throws(() => createS3BlobStore({ bucket: 'b12', region: 'us-east-1', partSize: 1024 }), NarhubError);
    assert.throws(() => createS3BlobStore({ bucket: 'b12', region: 'us-east-1', prefix: '../x' }), NarhubError);
  });
});
