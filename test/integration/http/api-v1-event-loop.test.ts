// The server's event loop keeps turning while the heavy parts of an upload run: decoding
// (bzip2, Nix's default upload compression, and every other), NAR validation and hashing, and
// zstd compression (native uploads) happen on codec threads (io/codec-thread/codec-stream.ts), not
// on the loop. Behavioural, not a benchmark: these tests count the turns the loop makes during
// an upload (test/helpers/loop-turns.ts), never milliseconds; how long the loop stalls is
// measured by bench/event-loop.bench.ts.
//
// The app stores blobs in memory and the body comes from app.inject (in one piece, or in chunks
// from a Readable), so nothing on the way waits for a socket or a disk: work on the loop happens
// in synchronous calls during which the count cannot move, and such an upload turns the loop as
// rarely as a tiny NAR's upload does (the baseline: a few turns; 1 for the in-process bzip2
// decoder, zstd compressor and NAR validator this replaced, whatever the size). Off the loop,
// the loop turns all the while the codec threads work: thousands of times or more.
// test/unit/io checks the same of the codecs alone, with the synchronous ones as controls.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { buildApp } from '../../../src/http/app.js';
import { assertValidKey, type BlobStore } from '../../../src/storage/blob-store.js';
import { basic, bearer, fileHashOf, makePath, type NarTree } from '../../helpers/build-app.js';
import { loopTurnsDuring } from '../../helpers/loop-turns.js';

/** A BlobStore in memory: writing never waits, so it adds no turns of its own. */
function memoryStore(): BlobStore {
  const blobs = new Map<string, Buffer>();
  return {
    kind: 'memory',
    async put(key, body, options = {}) {
      assertValidKey(key);
      const parts: Buffer[] = [];
      if (body instanceof Uint8Array) parts.push(Buffer.from(body));
      else for await (const chunk of body) parts.push(Buffer.from(chunk as Uint8Array));
      options.signal?.throwIfAborted();
      await options.beforeCommit?.();
      const data = Buffer.concat(parts);
      blobs.set(key, data);
      return { size: data.length };
    },
    async get(key, options = {}) {
      const data = blobs.get(key);
      if (!data) return null;
      const part = options.range ? data.subarray(options.range.start, options.range.end + 1) : data;
      return { stream: Readable.from([part]), size: part.length, totalSize: data.length };
    },
    async stat(key) {
      const data = blobs.get(key);
      return data ? { size: data.length } : null;
    },
    async delete(key) {
      blobs.delete(key);
    },
    async *list(prefix) {
      for (const key of blobs.keys()) if (key.startsWith(prefix)) yield key;
    },
    async close() {},
  };
}

/** The real app and cache service on a memory store; cache `main`. */
async function memoryApp(t: TestContext, zstd?: { level: number; workers: number }) {
  const dir = mkdtempSync(join(tmpdir(), 'narhub-loop-'));
  const db = openDatabase(join(dir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const service = createCacheService({ db, store: memoryStore(), keysDir: join(dir, 'keys'), zstd });
  const app = await buildApp({ service, maxNarSize: 256 * 1024 * 1024, maxSmallFileSize: 1024 * 1024 });
  t.after(async () => {
    await app.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await service.registry.create('main', { private: false, priority: 40 });
  const token = service.tokens.create({ cachePattern: 'main', permission: 'write' }).token;
  const put = (url: string, body: Buffer, headers: Record<string, string>) =>
    app.inject({ method: 'PUT', url, payload: body, headers });
  /** PUT nar/<file> the way Nix uploads, counting the loop's turns. */
  const putNar = (file: Buffer, fileName: string) =>
    loopTurnsDuring(() =>
      put(`/main/nar/${fileName}`, file, { ...basic(token), 'content-type': 'application/x-nix-nar' }),
    );
  return { app, token, put, putNar };
}

/** One regular file of base64 text: compressible, never repetitive. */
function bigTree(bytes: number): NarTree {
  return {
    type: 'directory',
    entries: { data: { type: 'regular', contents: Buffer.from(randomBytes((bytes / 4) * 3).toString('base64')) } },
  };
}

/**
 * The bound sits far above what codecs on the loop give (1 turn for each upload here, like the
 * baseline) and far below what codec threads give (10⁵-10⁶ turns measured on a 2-core machine
 * at a load average of 5-8, with a busy-loop process and other test files running beside).
 */
function assertTurned(what: string, turns: number, baseline: number): void {
  assert.ok(
    turns > 200 + 10 * baseline,
    `the loop turned ${turns} times during ${what}, ${baseline} times for a tiny NAR`,
  );
}

/**
 * Turns for the upload of a NAR of a few bytes, uncompressed: what an upload costs by itself.
 * The fewest of three, after a first that may start the codec threads (the loop turns while
 * they start) and so that one slow wake-up on a busy machine does not raise the bar.
 */
async function tinyBaseline(
  putNar: (file: Buffer, fileName: string) => Promise<{ value: { statusCode: number; body: string }; turns: number }>,
) {
  let fewest = Infinity;
  for (const label of ['warm-up', 'tiny 1', 'tiny 2', 'tiny 3']) {
    const tiny = makePath({ tree: { type: 'regular', contents: Buffer.from(label) } });
    const up = await putNar(tiny.file, tiny.fileName);
    assert.equal(up.value.statusCode, 204, up.value.body);
    if (label !== 'warm-up') fewest = Math.min(fewest, up.turns);
  }
  return { turns: fewest };
}

test('the loop keeps turning while a bzip2 NAR upload is decoded', async (t) => {
  const { putNar } = await memoryApp(t);
  const tree = bigTree(3 * 1024 * 1024); // 4 bzip2 blocks
  const packed = makePath({ tree, compression: 'bzip2' });

  const baseline = await tinyBaseline(putNar);
  const bzip2 = await putNar(packed.file, packed.fileName);
  assert.equal(bzip2.value.statusCode, 204, bzip2.value.body);
  t.diagnostic(`loop turns: bzip2 upload ${bzip2.turns}; a tiny NAR ${baseline.turns}`);
  assertTurned('the bzip2 upload', bzip2.turns, baseline.turns);
});

test('the loop keeps turning while a native upload is compressed', async (t) => {
  // Level 9 rather than 3: the same path through the code, but compression takes long enough
  // for the count to stand far clear of the bound even when the machine is busy.
  const { put, putNar, token } = await memoryApp(t, { level: 9, workers: 2 });
  const path = makePath({ tree: bigTree(32 * 1024 * 1024) });

  const baseline = await tinyBaseline(putNar);
  const meta = { storePath: path.storePath, narHash: fileHashOf(path.nar), narSize: path.nar.length, references: [] };
  const body = Buffer.concat([Buffer.from(`${JSON.stringify(meta)}\n`), path.nar]);
  const native = await loopTurnsDuring(() =>
    put(`/api/v1/caches/main/paths/${path.hashPart}`, body, {
      ...bearer(token),
      'content-type': 'application/x-narhub-path',
    }),
  );
  assert.equal(native.value.statusCode, 201, native.value.body);
  t.diagnostic(`loop turns: native upload ${native.turns}; a tiny NAR ${baseline.turns}`);
  assertTurned('the native upload', native.turns, baseline.turns);
});

test('the loop keeps turning while a raw or zstd NAR upload is hashed, decoded and validated', async (t) => {
  const { app, token, putNar } = await memoryApp(t);
  const baseline = await tinyBaseline(putNar);
  const mib = 64;
  const tree = bigTree(mib * 1024 * 1024);
  for (const compression of ['none', 'zstd'] as const) {
    const path = makePath({ tree, compression });
    // In 64 KiB chunks, as from a socket (one chunk of everything would be copied to the
    // threads in one go).
    const chunks: Buffer[] = [];
    for (let i = 0; i < path.file.length; i += 65536) chunks.push(path.file.subarray(i, i + 65536));
    const up = await loopTurnsDuring(() =>
      app.inject({
        method: 'PUT',
        url: `/main/nar/${path.fileName}`,
        payload: Readable.from(chunks, { objectMode: false }),
        headers: { ...basic(token), 'content-type': 'application/x-nix-nar' },
      }),
    );
    assert.equal(up.value.statusCode, 204, up.value.body);
    t.diagnostic(`loop turns: ${compression} upload ${up.turns}; a tiny NAR ${baseline.turns}`);
    // Hashing and parsing a raw NAR is quick work for a thread, which may keep up with the loop
    // handing it slabs: then the loop turns only for that. But it must come back for the
    // thread's answer after every 4 MiB (at most 4 slabs are at a thread at once), where work
    // on the loop would be one synchronous stretch (1 turn).
    assert.ok(up.turns >= mib / 4, `the loop turned ${up.turns} times during the ${compression} upload of ${mib} MiB`);
    if (compression === 'zstd') assertTurned('the zstd upload', up.turns, baseline.turns);
  }
});
