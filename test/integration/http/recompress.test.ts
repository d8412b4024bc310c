// Background recompression through the real app: xz and bzip2 uploads to a cache with
// recompressToZstd switch to zstd, the old files stay served until swept, bad files are left.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { decompress as zstdDecompress } from 'zstd-napi';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { reindex } from '../../../src/cache/reindex.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { buildApp } from '../../../src/http/app.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { verifyNarInfoSig } from '../../../src/nix/signing.js';
import { basic, buildTestApp, fileHashOf, makePath, nix32Of, upload, type TestApp } from '../../helpers/build-app.js';

async function withRecompressingCache(
  t: Parameters<typeof buildTestApp>[0],
): Promise<{ h: TestApp; auth: Record<string, string> }> {
  const h = await buildTestApp(t);
  await h.service.registry.create('rz', { private: false, priority: 40, recompressToZstd: true });
  h.service.recompressor.start();
  t.after(() => h.service.recompressor.stop());
  return { h, auth: basic(h.token('rz', 'write').token) };
}

test('xz and bzip2 uploads are recompressed to zstd; the narinfo switches, signatures stay valid', async (t) => {
  const { h, auth } = await withRecompressingCache(t);
  const xz = makePath({ name: 'xz', compression: 'xz' });
  const bz = makePath({ name: 'bz', compression: 'bzip2', references: [xz.basename] });
  const gz = makePath({ name: 'gz', compression: 'gzip' });
  await upload(h, xz, { cache: 'rz', auth });
  await upload(h, bz, { cache: 'rz', auth });
  await upload(h, gz, { cache: 'rz', auth });
  await h.service.recompressor.idle();

  for (const path of [xz, bz]) {
    const info = parseNarInfo((await h.request('GET', `/rz/${path.hashPart}.narinfo`)).body);
    assert.equal(info.compression, 'zstd');
    assert.equal(info.url, `nar/${nix32Of(path.nar)}.nar.zst`);
    assert.equal(info.narHash, fileHashOf(path.nar));
    assert.equal(info.narSize, path.nar.length);
    assert.deepEqual(info.references, path.references);
    const own = info.sigs.find((s) => s.startsWith('rz-1:'))!;
    assert.ok(verifyNarInfoSig(h.publicKeys('rz'), info, own), 'the original signature verifies on the new narinfo');
    const file = (await h.request('GET', `/rz/${info.url}`)).rawPayload;
    assert.equal(file.length, info.fileSize);
    assert.equal(fileHashOf(file), info.fileHash);
    assert.ok(zstdDecompress(file).equals(path.nar));
    // The old file is still there for clients that cached the old narinfo.
    const old = await h.request('GET', `/rz/${path.narUrl}`);
    assert.equal(old.statusCode, 200);
    assert.ok(old.rawPayload.equals(path.file));
    // The store's own copy of the narinfo follows the database.
    const stored = await h.store.get(`rz/${path.hashPart}.narinfo`);
    const chunks: Buffer[] = [];
    for await (const c of stored!.stream) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString('utf8'), (await h.request('GET', `/rz/${path.hashPart}.narinfo`)).body);
  }
  // Other compressions are left as uploaded; so are caches without the setting.
  assert.equal(parseNarInfo((await h.request('GET', `/rz/${gz.hashPart}.narinfo`)).body).compression, 'gzip');
  const plain = makePath({ compression: 'xz' });
  await upload(h, plain);
  await h.service.recompressor.idle();
  assert.equal(parseNarInfo((await h.request('GET', `/main/${plain.hashPart}.narinfo`)).body).compression, 'xz');
});

test('superseded files are swept only after their grace period and while no path needs them', async (t) => {
  const { h, auth } = await withRecompressingCache(t);
  const path = makePath({ compression: 'xz' });
  await upload(h, path, { cache: 'rz', auth });
  await h.service.recompressor.idle();

  assert.deepEqual(await h.service.recompressor.sweepSuperseded(3_600_000), { removed: 0 });
  assert.equal((await h.request('HEAD', `/rz/${path.narUrl}`)).statusCode, 200);

  // A second path with the very same xz file re-claims it (as Nix does after HEAD says 200) ...
  const twin = makePath({ name: 'twin', tree: path.tree, compression: 'xz' });
  assert.equal(twin.fileName, path.fileName);
  const res = await h.request('PUT', `/rz/${twin.hashPart}.narinfo`, {
    body: twin.narinfo(),
    headers: { ...auth, 'content-type': 'text/x-nix-narinfo' },
  });
  assert.equal(res.statusCode, 204, res.body);
  // ... and is moved onto the shared zstd file in turn.
  await h.service.recompressor.idle();
  assert.equal(
    parseNarInfo((await h.request('GET', `/rz/${twin.hashPart}.narinfo`)).body).url,
    `nar/${nix32Of(path.nar)}.nar.zst`,
  );

  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.deepEqual(await h.service.recompressor.sweepSuperseded(0), { removed: 1 });
  assert.equal((await h.request('HEAD', `/rz/${path.narUrl}`)).statusCode, 404);
  assert.equal((await h.request('GET', `/rz/nar/${nix32Of(path.nar)}.nar.zst`)).statusCode, 200);
  assert.equal((await h.request('GET', `/rz/${path.hashPart}.ls`)).statusCode, 200, 'the listing is shared and kept');
});

test('a file that no longer decompresses to its NarHash is left alone', async (t) => {
  const { h, auth } = await withRecompressingCache(t);
  await h.service.recompressor.stop();
  const path = makePath({ compression: 'xz' });
  await upload(h, path, { cache: 'rz', auth });
  // Bit rot on disk, behind the server's back.
  const other = makePath({ compression: 'xz' });
  writeFileSync(join(h.storeRoot, 'rz', 'nar', path.fileName), other.file);

  h.service.recompressor.start();
  await h.service.recompressor.idle();
  const info = parseNarInfo((await h.request('GET', `/rz/${path.hashPart}.narinfo`)).body);
  assert.equal(info.compression, 'xz');
  assert.equal(info.url, path.narUrl);
  assert.equal((await h.request('HEAD', `/rz/nar/${nix32Of(path.nar)}.nar.zst`)).statusCode, 404);
});

test('reindex restores paths whose files narhub named by NarHash (native uploads, recompression)', async (t) => {
  const { h, auth } = await withRecompressingCache(t);
  const recompressed = makePath({ name: 'xz', compression: 'xz' });
  await upload(h, recompressed, { cache: 'rz', auth });
  await h.service.recompressor.idle();
  const native = makePath({ name: 'native' });
  const body = Buffer.concat([
    Buffer.from(
      `${JSON.stringify({
        storePath: native.storePath,
        narHash: fileHashOf(native.nar),
        narSize: native.nar.length,
        references: [],
      })}\n`,
    ),
    native.nar,
  ]);
  const put = await h.request('PUT', `/api/v1/caches/rz/paths/${native.hashPart}`, {
    body,
    headers: { ...auth, 'content-type': 'application/x-narhub-path' },
  });
  assert.equal(put.statusCode, 201, put.body);

  const dir = mkdtempSync(join(tmpdir(), 'narhub-reindex-'));
  const db = openDatabase(join(dir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: h.storeRoot, fsync: false });
  const service = createCacheService({ db, store, keysDir: join(h.dataDir, 'keys') });
  const app = await buildApp({ service, maxNarSize: 1 << 26, maxSmallFileSize: 1 << 20 });
  t.after(async () => {
    await app.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const warnings: string[] = [];
  await reindex(
    { db, store, keysDir: join(h.dataDir, 'keys') },
    { cache: 'rz', settingsFor: () => ({ private: false }), warn: (m) => void warnings.push(m) },
  );
  assert.deepEqual(
    warnings.filter((w) => /skipped/.test(w)),
    [],
  );
  for (const path of [recompressed, native]) {
    const before = await h.request('GET', `/rz/${path.hashPart}.narinfo`);
    const after = await app.inject({ method: 'GET', url: `/rz/${path.hashPart}.narinfo` });
    assert.equal(after.statusCode, 200, after.body);
    assert.equal(after.body, before.body);
    const info = parseNarInfo(after.body);
    const nar = await app.inject({ method: 'GET', url: `/rz/${info.url}` });
    assert.equal(nar.statusCode, 200);
    assert.equal(fileHashOf(nar.rawPayload), info.fileHash);
  }
});
