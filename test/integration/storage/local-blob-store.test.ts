import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { NarhubError } from '../../../src/errors.js';
import type { BlobStore } from '../../../src/storage/blob-store.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { ownTempDirName } from '../../../src/storage/temp-owners.js';
import { TEMP_DIR, tempFiles } from '../../helpers/temp-files.js';
import { makeTempDir, removeTree } from '../../helpers/tmp.js';
import { blobStoreContract } from './blob-store-contract.js';

blobStoreContract('local', async () => {
  const root = await mkdtemp(join(tmpdir(), 'narhub-blob-'));
  return { store: createLocalBlobStore({ root }), cleanup: () => removeTree(root) };
});

blobStoreContract('local without fsync', async () => {
  const root = await mkdtemp(join(tmpdir(), 'narhub-blob-'));
  return { store: createLocalBlobStore({ root, fsync: false }), cleanup: () => removeTree(root) };
});

describe('local blob store', () => {
  async function setup(t: Parameters<typeof makeTempDir>[0]): Promise<{ root: string; store: BlobStore }> {
    const parent = await makeTempDir(t, 'narhub-blob-');
    // A root that does not exist yet: the store creates it.
    const root = join(parent, 'blobs');
    const store = createLocalBlobStore({ root });
    t.after(() => store.close());
    return { root, store };
  }

  async function* failingBody(err: Error): AsyncGenerator<Uint8Array> {
    yield randomBytes(100_000);
    throw err;
  }

  it('stores a key at exactly its path under root', async (t) => {
    const { root, store } = await setup(t);
    await store.put('main/nar/0abc.nar.zst', Buffer.from('nar bytes'));
    await store.put('main/0abc.narinfo', Buffer.from('narinfo'));
    assert.equal(await readFile(join(root, 'main', 'nar', '0abc.nar.zst'), 'utf8'), 'nar bytes');
    assert.equal(await readFile(join(root, 'main', '0abc.narinfo'), 'utf8'), 'narinfo');
    assert.deepEqual((await readdir(root)).sort(), [TEMP_DIR, 'main']);
  });

  it('many puts at once into one directory all land, whole (their directory fsyncs are shared)', async (t) => {
    const { root, store } = await setup(t);
    const bodies = Array.from({ length: 64 }, (_, i) => randomBytes(100 + i));
    await Promise.all(bodies.map((b, i) => store.put(`main/nar/${i}.nar`, b)));
    for (const [i, b] of bodies.entries())
      assert.ok((await readFile(join(root, 'main', 'nar', `${i}.nar`))).equals(b), `file ${i}`);
    assert.deepEqual(tempFiles(root), []);
  });

  it('a put still lands after its directory, known from an earlier put, was removed behind its back', async (t) => {
    const { root, store } = await setup(t);
    await store.put('main/nar/a.nar', Buffer.from('a'));
    await rm(join(root, 'main'), { recursive: true });
    await rm(join(root, TEMP_DIR), { recursive: true });
    await store.put('main/nar/b.nar', Buffer.from('b'));
    assert.equal(await readFile(join(root, 'main', 'nar', 'b.nar'), 'utf8'), 'b');
    const read = await store.get('main/nar/b.nar');
    assert.ok(read);
    const chunks: Buffer[] = [];
    for await (const c of read.stream) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'b');
  });

  it('hands small files out whole as bytes and streams large ones', async (t) => {
    const { store } = await setup(t);
    const small = randomBytes(256 * 1024);
    const large = randomBytes(256 * 1024 + 1);
    await store.put('main/small', small);
    await store.put('main/large', large);
    const smallRead = await store.get('main/small');
    assert.ok(smallRead?.bytes, 'a file of 256 KiB comes as bytes');
    assert.ok(Buffer.from(smallRead.bytes).equals(small));
    assert.ok(Buffer.concat(await smallRead.stream.toArray()).equals(small));
    const largeRead = await store.get('main/large');
    assert.ok(largeRead);
    assert.equal(largeRead.bytes, undefined, 'a larger file streams');
    assert.ok(Buffer.concat(await largeRead.stream.toArray()).equals(large));
  });

  it('close lets the puts already given finish, then refuses new ones', async (t) => {
    const parent = await makeTempDir(t, 'narhub-blob-');
    const root = join(parent, 'blobs');
    const store = createLocalBlobStore({ root });
    const bodies = Array.from({ length: 32 }, (_, i) => randomBytes(1000 + i));
    const puts = bodies.map((b, i) => store.put(`main/nar/${i}.nar`, b));
    await store.close();
    await Promise.all(puts);
    for (const [i, b] of bodies.entries())
      assert.ok((await readFile(join(root, 'main', 'nar', `${i}.nar`))).equals(b), `file ${i}`);
    await assert.rejects(store.put('main/nar/late.nar', Buffer.from('late')));
    assert.equal(existsSync(join(root, 'main', 'nar', 'late.nar')), false);
  });

  it('leaves no temp file after a failed, aborted, mis-sized or vetoed put', async (t) => {
    const { root, store } = await setup(t);
    const boom = new Error('source failed');
    // The source's own error comes back unchanged, so domain errors (hash mismatch…) survive.
    await assert.rejects(store.put('main/a', failingBody(boom)), (err) => err === boom);
    await assert.rejects(store.put('main/b', randomBytes(10), { signal: AbortSignal.abort() }));
    const controller = new AbortController();
    const aborting = (async function* () {
      yield randomBytes(10_000);
      controller.abort();
      yield randomBytes(10_000);
    })();
    await assert.rejects(store.put('main/c', aborting, { signal: controller.signal }), { name: 'AbortError' });
    await assert.rejects(store.put('main/d', Buffer.from('abc'), { size: 4 }), { code: 'BAD_REQUEST' });
    await assert.rejects(
      store.put('main/e', Buffer.from('abc'), { beforeCommit: async () => Promise.reject(boom) }),
      (err) => err === boom,
    );
    assert.deepEqual(tempFiles(root), []);
    assert.deepEqual(await readdir(root).then((names) => names.sort()), [TEMP_DIR]);
  });

  it('at start, sweeps loose temp files (of older narhubs) untouched for an hour and spares fresh ones', async (t) => {
    const root = await makeTempDir(t, 'narhub-blob-');
    const temp = join(root, TEMP_DIR);
    await mkdir(temp);
    await writeFile(join(temp, 'crashed'), 'half a nar');
    await mkdir(join(temp, 'crashed-dir'));
    const dayAgo = new Date(Date.now() - 24 * 3600 * 1000);
    await utimes(join(temp, 'crashed'), dayAgo, dayAgo);
    await utimes(join(temp, 'crashed-dir'), dayAgo, dayAgo);
    // An older narhub sharing the root may be writing this one right now.
    await writeFile(join(temp, 'in-flight'), 'being written');

    const store = createLocalBlobStore({ root });
    t.after(() => store.close());
    assert.deepEqual(tempFiles(root), [{ path: 'in-flight', size: 13 }]);
    assert.equal(existsSync(join(temp, 'crashed-dir')), false);
  });

  it('at start, removes temp directories of ended processes or other boots, however fresh, not live', async (t) => {
    const root = await makeTempDir(t, 'narhub-blob-');
    const temp = join(root, TEMP_DIR);
    // Names as ownTempDirName() makes them: boot, pid, start time in ticks, random.
    const [boot, pid, ticks] = ownTempDirName().split('-') as [string, string, string];
    const live = `${boot}-${pid}-${ticks}-0000000a`;
    const gone = [
      `${boot}-${2 ** 22 + 1}-${ticks}-0000000b`, // a pid no process has (above Linux's pid_max)
      `${boot}-${pid}-${Number(ticks) + 1}-0000000c`, // this pid, but a process started later: pid reused
      `${boot === '00000000' ? '00000001' : '00000000'}-${pid}-${ticks}-0000000d`, // another boot
    ];
    for (const dir of [live, ...gone]) {
      await mkdir(join(temp, dir), { recursive: true });
      await writeFile(join(temp, dir, 'part'), 'half a nar');
    }

    const store = createLocalBlobStore({ root });
    t.after(() => store.close());
    assert.deepEqual(tempFiles(root), [{ path: join(live, 'part'), size: 10 }]);
  });

  it('a closed store removes its temp directory', async (t) => {
    const root = await makeTempDir(t, 'narhub-blob-');
    const store = createLocalBlobStore({ root });
    await store.put('main/a', randomBytes(300_000));
    await store.put(
      'main/b',
      (async function* () {
        yield randomBytes(300_000);
      })(),
    );
    assert.equal((await readdir(join(root, TEMP_DIR))).length, 1, 'the store made its own');
    await store.close();
    assert.deepEqual(await readdir(join(root, TEMP_DIR)), []);
  });

  it('rejects keys that would escape root without touching the disk', async (t) => {
    const { root, store } = await setup(t);
    for (const key of ['../escaped', '../../escaped', '/tmp/escaped', 'a/../../escaped']) {
      await assert.rejects(store.put(key, Buffer.from('x')), { code: 'BAD_REQUEST' });
    }
    assert.equal(existsSync(join(root, '..', 'escaped')), false);
    assert.equal(existsSync(join(root, '..', '..', 'escaped')), false);
    // `..`-looking names that are ordinary segments stay inside root.
    await store.put('..a/b..', Buffer.from('fine'));
    assert.equal(await readFile(join(root, '..a', 'b..'), 'utf8'), 'fine');
  });

  it('lists only keys, skipping the temp dir and names no key could have', async (t) => {
    const { root, store } = await setup(t);
    await store.put('main/a', Buffer.from('a'));
    await writeFile(join(root, TEMP_DIR, 'in-flight'), 'x');
    await writeFile(join(root, 'main', 'not a key'), 'x');
    await symlink(join(root, 'main', 'a'), join(root, 'main', 'link'));
    const keys: string[] = [];
    for await (const key of store.list('')) keys.push(key);
    assert.deepEqual(keys, ['main/a']);
    // A prefix no valid key can start with lists nothing rather than walking outside root.
    for await (const key of store.list('../')) assert.fail(`listed ${key}`);
  });

  it('treats a directory as an absent key', async (t) => {
    const { store } = await setup(t);
    await store.put('main/nar/a.nar', Buffer.from('a'));
    assert.equal(await store.get('main/nar'), null);
    assert.equal(await store.stat('main/nar'), null);
    await store.delete('main/nar');
    assert.equal(await store.get('main/nar/a.nar/x'), null);
    assert.equal(await store.stat('main/nar/a.nar/x'), null);
    await store.delete('main/nar/a.nar/x');
  });

  it('fails a put under a key that is a file as STORAGE_ERROR', async (t) => {
    const { root, store } = await setup(t);
    await store.put('main/a', Buffer.from('a'));
    await assert.rejects(store.put('main/a/b', Buffer.from('b')), { code: 'STORAGE_ERROR' });
    assert.deepEqual(tempFiles(root), []);
  });

  it('refuses a range outside the blob', async (t) => {
    const { store } = await setup(t);
    await store.put('main/a', Buffer.from('0123456789'));
    for (const range of [
      { start: 0, end: 10 },
      { start: 5, end: 4 },
      { start: -1, end: 3 },
    ]) {
      await assert.rejects(
        store.get('main/a', { range }),
        (err) => err instanceof NarhubError && err.code === 'RANGE_NOT_SATISFIABLE',
      );
    }
  });

  it('keeps a reader on the old content when the key is overwritten mid-read', async (t) => {
    const { store } = await setup(t);
    const old = randomBytes(2_000_000);
    await store.put('main/k', old);
    const read = await store.get('main/k');
    assert.ok(read);
    await store.put('main/k', Buffer.from('new'));
    const got = Buffer.concat(await read.stream.toArray());
    assert.equal(got.length, read.size);
    assert.ok(got.equals(old));
  });

  it('ends a read stream when its signal aborts', async (t) => {
    const { store } = await setup(t);
    await store.put('main/k', randomBytes(5_000_000));
    const controller = new AbortController();
    const read = await store.get('main/k', { signal: controller.signal });
    assert.ok(read);
    controller.abort();
    await assert.rejects(read.stream.toArray(), { name: 'AbortError' });
  });

  it('reports an unusable root as CONFIG_INVALID', async (t) => {
    const parent = await makeTempDir(t, 'narhub-blob-');
    await writeFile(join(parent, 'file'), 'x');
    assert.throws(() => createLocalBlobStore({ root: join(parent, 'file') }), { code: 'CONFIG_INVALID' });
  });
});
