// Multipart uploads a crashed narhub left in the bucket: the S3 store aborts those under its own
// prefix that are older than the grace period and that no put of its own is driving, and leaves
// the rest (fresh ones another live process may own, other prefixes) alone. s3rver 3.7 answers
// ListMultipartUploads with NotImplemented; test/helpers/s3.ts adds it over s3rver's own upload
// directories, with each upload's Initiated.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateMultipartUploadCommand, type S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { createS3BlobStore } from '../../../src/storage/s3-blob-store.js';
import { sdkClient, startS3, suiteScope, type S3Server } from '../../helpers/s3.js';

const MIB = 1024 * 1024;
const DAY = 86_400_000;

const scope = suiteScope();
let server: S3Server;
before(async () => {
  server = await startS3(scope);
});
after(() => scope.run());

/** An upload started (one part sent) and never finished, as a narhub killed mid-put leaves it. */
async function leftover(client: S3Client, Key: string): Promise<string> {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: server.bucket, Key }));
  await client.send(
    new UploadPartCommand({ Bucket: server.bucket, Key, UploadId, PartNumber: 1, Body: randomBytes(5 * MIB) }),
  );
  return UploadId!;
}

test('stale uploads under the prefix are aborted; fresh ones, other prefixes and puts in flight stay', async (t) => {
  const client = sdkClient(t, server);
  const twoDaysAgo = new Date(Date.now() - 2 * DAY);
  const old = await leftover(client, 'p1/main/nar/old.nar');
  await server.ageUpload(old, twoDaysAgo);
  await leftover(client, 'p1/main/nar/fresh.nar');
  const elsewhere = await leftover(client, 'p2/main/nar/other.nar');
  await server.ageUpload(elsewhere, twoDaysAgo);

  const store = createS3BlobStore({ ...server.storeOptions('p1/'), partSize: 5 * MIB, queueSize: 1 });
  t.after(() => store.close());
  // A put of this store in flight, as old as the stale one: its body stops after two parts.
  let resume!: () => void;
  const resumed = new Promise<void>((resolve) => (resume = resolve));
  async function* body(): AsyncGenerator<Uint8Array> {
    yield randomBytes(11 * MIB);
    await resumed;
    yield randomBytes(MIB);
  }
  const putting = store.put('main/nar/in-flight.nar', body());
  const keys = async () => (await server.pendingUploads()).map((u) => u.key).sort();
  // Aged once both parts are in (a part written later would make it fresh again).
  const partsSent = () =>
    server.requests.filter((r) => r.startsWith('PUT /narhub-test/p1/main/nar/in-flight.nar [partNumber'));
  for (let i = 0; partsSent().length < 2; i++) {
    assert.ok(i < 400, 'the put sent its first two parts');
    await sleep(25);
  }
  await sleep(500);
  const own = (await server.pendingUploads()).find((u) => u.key === 'p1/main/nar/in-flight.nar')!;
  await server.ageUpload(own.uploadId, twoDaysAgo);

  assert.equal(await store.abortStaleUploads!(DAY), 1);
  assert.deepEqual(await keys(), ['p1/main/nar/fresh.nar', 'p1/main/nar/in-flight.nar', 'p2/main/nar/other.nar']);

  resume();
  assert.deepEqual(await putting, { size: 12 * MIB });
  assert.equal((await store.stat('main/nar/in-flight.nar'))?.size, 12 * MIB);

  // With no grace at all, the fresh one goes too; another prefix's never does.
  assert.equal(await store.abortStaleUploads!(0), 1);
  assert.deepEqual(await keys(), ['p2/main/nar/other.nar']);
});
