// Serving storage reads through reused buffers: bytes exactly as stored (whole and ranges),
// chunks recycled only once written, the file closed however the response ends.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, get as httpGet, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { responseBody } from '../../../src/http/recycling-body.js';
import type { BlobRead, BlobStore } from '../../../src/storage/blob-store.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { makeTempDir } from '../../helpers/tmp.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function setup(t: Parameters<typeof makeTempDir>[0], size: number) {
  const root = await makeTempDir(t, 'narhub-recycle-');
  const store: BlobStore = createLocalBlobStore({ root, fsync: false });
  const data = randomBytes(size);
  await store.put('main/nar/x.nar', data);
  const reads: { read: BlobRead; recycled: number }[] = [];
  const server: Server = createServer((req, res) => {
    const range = req.headers.range
      ? { start: Number(req.headers.range.split('-')[0]), end: Number(req.headers.range.split('-')[1]) }
      : undefined;
    void store.get('main/nar/x.nar', range ? { range } : {}).then((read) => {
      const entry = { read: read!, recycled: 0 };
      const recycle = read!.recycle!;
      read!.recycle = (chunk) => {
        entry.recycled++;
        recycle(chunk);
      };
      reads.push(entry);
      res.writeHead(200, { 'content-length': read!.size });
      responseBody(read!).pipe(res);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { data, reads, url };
}

function fetchRaw(url: string, headers: Record<string, string> = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => httpGet(url, { headers }, resolve).once('error', reject));
}

async function body(res: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of res) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

test('a local read is served whole and in ranges, its chunks recycled', async (t) => {
  const h = await setup(t, 9 * 1024 * 1024 + 12345);
  assert.equal(sha256(await body(await fetchRaw(h.url))), sha256(h.data));
  assert.ok(h.reads[0]!.recycled >= 8, `recycled ${h.reads[0]!.recycled} chunks`);
  const ranged = await body(await fetchRaw(h.url, { range: '1000-5000000' }));
  assert.equal(sha256(ranged), sha256(h.data.subarray(1000, 5000001)));
  // The file handles are closed once the stream ends.
  await new Promise((r) => setTimeout(r, 50));
  for (const { read } of h.reads) assert.ok(read.stream.destroyed);
});

test('a client that goes away mid-body: the read stops and its file is closed', async (t) => {
  const h = await setup(t, 64 * 1024 * 1024);
  const res = await fetchRaw(h.url);
  await once(res, 'data');
  res.destroy();
  const deadline = Date.now() + 5000;
  while (!h.reads[0]!.read.stream.destroyed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(h.reads[0]!.read.stream.destroyed);
});

test('read directly (not piped), the body passes the chunks on unchanged', async (t) => {
  const root = await makeTempDir(t, 'narhub-recycle-');
  const store = createLocalBlobStore({ root, fsync: false });
  const data = randomBytes(3 * 1024 * 1024 + 7);
  await store.put('k', data);
  const read = (await store.get('k'))!;
  const parts: Buffer[] = [];
  for await (const chunk of responseBody(read)) parts.push(Buffer.from(chunk as Buffer));
  assert.equal(sha256(Buffer.concat(parts)), sha256(data));
});
