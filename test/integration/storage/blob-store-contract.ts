// Behaviour every BlobStore must share, whatever it stores into. Backends run it from their own
// test file; only the interface's promises are checked here, never how a backend keeps bytes.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setImmediate as nextTick } from 'node:timers/promises';
import { NarhubError } from '../../../src/errors.js';
import type { BlobStore } from '../../../src/storage/blob-store.js';

export type MakeBlobStore = () => Promise<{ store: BlobStore; cleanup: () => Promise<void> }>;

export function blobStoreContract(name: string, makeStore: MakeBlobStore): void {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ store, cleanup } = await makeStore());
    });
    afterEach(async () => {
      await store.close();
      await cleanup();
    });

    it('has a kind', () => {
      assert.equal(typeof store.kind, 'string');
      assert.ok(store.kind.length > 0);
    });

    it('round-trips bytes put as a Uint8Array', async () => {
      const bytes = randomBytes(1000);
      assert.deepEqual(await store.put('c/nar/a.nar', new Uint8Array(bytes)), { size: 1000 });
      await assertContent(store, 'c/nar/a.nar', bytes);
    });

    it('round-trips bytes put as a Readable and as an async iterable', async () => {
      const parts = [randomBytes(10), randomBytes(70_000), randomBytes(1)];
      const whole = Buffer.concat(parts);
      assert.deepEqual(await store.put('c/readable', Readable.from(parts)), { size: whole.length });
      assert.deepEqual(await store.put('c/iterable', generate(parts)), { size: whole.length });
      await assertContent(store, 'c/readable', whole);
      await assertContent(store, 'c/iterable', whole);
    });

    it('overwrites a key with the new content', async () => {
      await store.put('c/k', Buffer.from('the old, longer content'));
      await store.put('c/k', Buffer.from('new'));
      await assertContent(store, 'c/k', Buffer.from('new'));
      assert.deepEqual(await store.stat('c/k'), { size: 3 });
    });

    it('stores an empty blob', async () => {
      assert.deepEqual(await store.put('c/empty', new Uint8Array(0)), { size: 0 });
      assert.deepEqual(await store.stat('c/empty'), { size: 0 });
      await assertContent(store, 'c/empty', Buffer.alloc(0));
      assert.deepEqual(await store.put('c/empty-stream', generate([])), { size: 0 });
      await assertContent(store, 'c/empty-stream', Buffer.alloc(0));
    });

    it('streams a 20 MB body generated lazily', async () => {
      const written = createHash('sha256');
      let total = 0;
      async function* body(): AsyncGenerator<Uint8Array> {
        // Uneven chunk sizes so no backend can rely on aligned writes.
        for (let i = 0; total < 20 * 1024 * 1024; i++) {
          const chunk = randomBytes(Math.min(20 * 1024 * 1024 - total, 1 + ((i * 7919) % 200_000)));
          written.update(chunk);
          total += chunk.length;
          yield chunk;
        }
      }
      assert.deepEqual(await store.put('c/nar/big.nar', body()), { size: 20 * 1024 * 1024 });
      assert.deepEqual(await store.stat('c/nar/big.nar'), { size: total });

      const read = await store.get('c/nar/big.nar');
      assert.ok(read);
      assert.equal(read.size, total);
      assert.equal(read.totalSize, total);
      const seen = createHash('sha256');
      let seenBytes = 0;
      for await (const chunk of read.stream) {
        seen.update(chunk as Buffer);
        seenBytes += (chunk as Buffer).length;
      }
      assert.equal(seenBytes, total);
      assert.equal(seen.digest('hex'), written.digest('hex'));
    });

    // Small blobs may be read whole (and handed out as `bytes` too), large ones stream.
    for (const length of [30_000, 300_000]) {
      it(`reads byte ranges of a ${length}-byte blob`, async () => {
        const bytes = randomBytes(length);
        await store.put('c/ranged', generate([bytes.subarray(0, 10_000), bytes.subarray(10_000)]));
        const last = bytes.length - 1;
        for (const [start, end] of [
          [0, 0],
          [10, 19],
          [20_000, 25_000],
          [last, last],
          [0, last],
        ] as const) {
          const read = await store.get('c/ranged', { range: { start, end } });
          assert.ok(read, `range ${start}-${end}`);
          assert.equal(read.size, end - start + 1, `size of range ${start}-${end}`);
          assert.equal(read.totalSize, bytes.length, `totalSize of range ${start}-${end}`);
          const want = bytes.subarray(start, end + 1);
          if (read.bytes !== undefined)
            assert.ok(Buffer.from(read.bytes).equals(want), `bytes of range ${start}-${end}`);
          assert.ok(Buffer.concat(await read.stream.toArray()).equals(want), `range ${start}-${end}`);
        }
      });
    }

    it('answers null for a missing key', async () => {
      assert.equal(await store.get('c/missing'), null);
      assert.equal(await store.get('c/missing', { range: { start: 0, end: 0 } }), null);
      assert.equal(await store.stat('c/missing'), null);
      assert.equal(await store.get('nowhere/at/all'), null);
    });

    it('stats a key', async () => {
      await store.put('c/s', randomBytes(12_345));
      assert.deepEqual(await store.stat('c/s'), { size: 12_345 });
    });

    it('deletes a key, and deleting a missing key is fine', async () => {
      await store.put('c/nar/a.nar', Buffer.from('a'));
      await store.put('c/nar/b.nar', Buffer.from('b'));
      await store.delete('c/nar/a.nar');
      assert.equal(await store.get('c/nar/a.nar'), null);
      assert.equal(await store.stat('c/nar/a.nar'), null);
      await assertContent(store, 'c/nar/b.nar', Buffer.from('b'));
      assert.deepEqual(await collect(store.list('c/')), ['c/nar/b.nar']);

      await store.delete('c/nar/a.nar');
      await store.delete('never/existed');
      // The key can be written again after a delete.
      await store.put('c/nar/a.nar', Buffer.from('again'));
      await assertContent(store, 'c/nar/a.nar', Buffer.from('again'));
    });

    it('lists keys by prefix', async () => {
      const keys = ['c1/nar/a.nar', 'c1/nar/b.nar', 'c1/x.narinfo', 'c10/y.narinfo', 'c2/nar/a.nar', 'top'];
      for (const key of keys) await store.put(key, Buffer.from(key));

      assert.deepEqual(await collect(store.list('')), [...keys].sort());
      assert.deepEqual(await collect(store.list('c1/')), ['c1/nar/a.nar', 'c1/nar/b.nar', 'c1/x.narinfo']);
      assert.deepEqual(await collect(store.list('c1/nar/')), ['c1/nar/a.nar', 'c1/nar/b.nar']);
      // A prefix is a string prefix, not a directory: it may end mid-segment.
      assert.deepEqual(await collect(store.list('c1')), [
        'c1/nar/a.nar',
        'c1/nar/b.nar',
        'c1/x.narinfo',
        'c10/y.narinfo',
      ]);
      assert.deepEqual(await collect(store.list('c1/nar/a')), ['c1/nar/a.nar']);
      assert.deepEqual(await collect(store.list('c1/x')), ['c1/x.narinfo']);
      assert.deepEqual(await collect(store.list('c2/')), ['c2/nar/a.nar']);
      assert.deepEqual(await collect(store.list('c3/')), []);
      assert.deepEqual(await collect(store.list('c1/nar/a.nar/')), []);
    });

    it('rejects invalid keys in every method', async () => {
      for (const key of ['../x', 'a/../../x', '/abs', 'a//b', 'a/./b', 'a/', '', 'a\0b', 'a b', 'a\\b']) {
        const label = JSON.stringify(key);
        await assert.rejects(store.put(key, Buffer.from('x')), isBadRequest, `put ${label}`);
        await assert.rejects(store.get(key), isBadRequest, `get ${label}`);
        await assert.rejects(store.stat(key), isBadRequest, `stat ${label}`);
        await assert.rejects(store.delete(key), isBadRequest, `delete ${label}`);
      }
      assert.deepEqual(await collect(store.list('')), []);
    });

    it('keeps the old content when the body errors midway', async () => {
      await store.put('c/k', Buffer.from('old'));
      const boom = new Error('source failed');
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield randomBytes(100_000);
        yield randomBytes(100_000);
        throw boom;
      }
      await assert.rejects(store.put('c/k', failing()));
      await assertContent(store, 'c/k', Buffer.from('old'));

      const erroring = new Readable({ read() {} });
      erroring.push(randomBytes(50_000));
      setImmediate(() => erroring.destroy(boom));
      await assert.rejects(store.put('c/k', erroring));
      await assertContent(store, 'c/k', Buffer.from('old'));

      await assert.rejects(store.put('c/fresh', failing()));
      assert.equal(await store.get('c/fresh'), null);
      assert.equal(await store.stat('c/fresh'), null);
      assert.deepEqual(await collect(store.list('')), ['c/k']);
    });

    it('keeps the old content when a put is aborted', async () => {
      await store.put('c/k', Buffer.from('old'));
      const controller = new AbortController();
      async function* endless(): AsyncGenerator<Uint8Array> {
        // Bounded, so a store that ignores the signal finishes the put and fails the test.
        for (let i = 0; i < 500; i++) {
          if (i === 3) controller.abort();
          yield randomBytes(10_000);
          await nextTick();
        }
      }
      await assert.rejects(store.put('c/k', endless(), { signal: controller.signal }));
      await assertContent(store, 'c/k', Buffer.from('old'));

      await assert.rejects(store.put('c/fresh', endless(), { signal: AbortSignal.abort() }));
      await assert.rejects(store.put('c/fresh', Buffer.from('x'), { signal: AbortSignal.abort() }));
      assert.equal(await store.get('c/fresh'), null);
      assert.deepEqual(await collect(store.list('')), ['c/k']);
    });

    it('runs beforeCommit after the last byte and before the key changes', async () => {
      await store.put('c/k', Buffer.from('old'));
      let bodyDone = false;
      let calls = 0;
      async function* body(): AsyncGenerator<Uint8Array> {
        yield randomBytes(100_000);
        yield Buffer.from('new');
        bodyDone = true;
      }
      const info = await store.put('c/k', body(), {
        beforeCommit: async () => {
          calls++;
          assert.equal(bodyDone, true, 'the whole body was consumed');
          await assertContent(store, 'c/k', Buffer.from('old'));
        },
      });
      assert.equal(calls, 1);
      assert.deepEqual(info, { size: 100_003 });
      assert.deepEqual(await store.stat('c/k'), { size: 100_003 });
    });

    it('abandons the put when beforeCommit throws, passing its error on', async () => {
      await store.put('c/k', Buffer.from('old'));
      const mismatch = new NarhubError('FILE_HASH_MISMATCH', 'not the promised bytes');
      const rejected = async () => {
        throw mismatch;
      };
      await assert.rejects(
        store.put('c/k', generate([randomBytes(50_000)]), { beforeCommit: rejected }),
        (err) => err === mismatch,
      );
      await assertContent(store, 'c/k', Buffer.from('old'));
      await assert.rejects(
        store.put('c/fresh', Buffer.from('x'), { beforeCommit: rejected }),
        (err) => err === mismatch,
      );
      assert.equal(await store.stat('c/fresh'), null);
      assert.deepEqual(await collect(store.list('')), ['c/k']);
    });

    it('does not run beforeCommit when the body fails', async () => {
      let calls = 0;
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield randomBytes(10);
        throw new Error('source failed');
      }
      await assert.rejects(store.put('c/k', failing(), { beforeCommit: async () => void calls++ }));
      assert.equal(calls, 0);
    });

    it('shows one whole body when puts to a key race', async () => {
      const a = randomBytes(1_000_000);
      const b = randomBytes(1_500_000);
      await Promise.all([
        store.put('c/race', generate([a.subarray(0, 500_000), a.subarray(500_000)])),
        store.put('c/race', generate([b.subarray(0, 500_000), b.subarray(500_000)])),
      ]);
      const read = await store.get('c/race');
      assert.ok(read);
      const got = Buffer.concat(await read.stream.toArray());
      assert.ok(got.equals(a) || got.equals(b), 'content is one of the two bodies, whole');
      assert.equal(read.size, got.length);
    });
  });
}

async function* generate(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) {
    await nextTick();
    yield chunk;
  }
}

async function assertContent(store: BlobStore, key: string, expected: Buffer): Promise<void> {
  const read = await store.get(key);
  assert.ok(read, `${key} exists`);
  assert.equal(read.size, expected.length, `${key} size`);
  assert.equal(read.totalSize, expected.length, `${key} totalSize`);
  const got = Buffer.concat(await read.stream.toArray());
  assert.ok(got.equals(expected), `${key} content (${got.length} bytes, expected ${expected.length})`);
}

async function collect(keys: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const key of keys) out.push(key);
  return out.sort();
}

function isBadRequest(err: unknown): boolean {
  return err instanceof NarhubError && err.code === 'BAD_REQUEST';
}
