// Every refused upload: a 4xx the client does not retry, a one-line `CODE: reason`, and nothing
// left visible afterwards.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import type { LightMyRequestResponse } from 'fastify';
import { COMPRESSION_EXTENSION } from '../../../src/io/compression.js';
import {
  basic,
  bearer,
  buildTestApp,
  compressBytes,
  fileHashOf,
  makePath,
  narBytes,
  narFileNameFor,
  nix32Of,
  putNar,
  putNarinfo,
  randomHashPart,
  sampleTree,
  upload,
  visibility,
  type TestApp,
  type TestPath,
} from '../../helpers/build-app.js';
import { tempFiles } from '../../helpers/temp-files.js';

function assertRejected(res: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(res.statusCode, status, `expected ${status} ${code}, got ${res.statusCode} ${res.body}`);
  assert.match(res.body, new RegExp(`^${code}: [^\\n]+\\n$`), `one-line reason: ${JSON.stringify(res.body)}`);
  assert.equal(res.headers['x-narhub-error'], code);
  assert.match(res.headers['content-type'] as string, /^text\/plain\b/);
}

async function assertNothingVisible(
  h: TestApp,
  path: Pick<TestPath, 'hashPart' | 'fileName'>,
  cache = 'main',
): Promise<void> {
  assert.deepEqual(await visibility(h, path, cache), { narinfo: 404, narHead: 404, narGet: 404 });
}

/** No bytes of a refused NAR under its name in the blob store, and no leftover temp file. */
function assertNotStored(h: TestApp, fileName: string, cache = 'main'): void {
  assert.equal(
    existsSync(join(h.storeRoot, cache, 'nar', fileName)),
    false,
    `${fileName} must not be in the blob store`,
  );
  assert.deepEqual(tempFiles(h.storeRoot), [], 'no temp files left behind');
}

/** A NAR of one regular file `hello\n` (docs/protocol.md, NAR): contents at offset 96, padding at 102-103. */
const helloNar = () => narBytes({ type: 'regular', contents: Buffer.from('hello\n') });

function invalidUpload(
  nar: Buffer,
  compression: 'none' | 'zstd' | 'xz' = 'none',
): { file: Buffer; fileName: string; hashPart: string } {
  const file = compressBytes(nar, compression);
  return { file, fileName: narFileNameFor(file, compression), hashPart: randomHashPart() };
}

test('a tampered NAR (a flipped content byte) no longer matches its name: FILE_HASH_MISMATCH', async (t) => {
  const h = await buildTestApp(t);
  for (const compression of ['none', 'zstd', 'gzip'] as const) {
    const path = makePath({ compression });
    const tamperedNar = Buffer.from(path.nar);
    const at = tamperedNar.indexOf(Buffer.from('#!/bin/sh'));
    assert.ok(at > 0);
    tamperedNar[at + 3] = tamperedNar[at + 3]! ^ 0x01; // still a perfectly valid NAR, just different content
    const tamperedFile = compressBytes(tamperedNar, compression);
    const res = await putNar(h, { file: tamperedFile, fileName: path.fileName }, basic(h.tokens.write));
    assertRejected(res, 400, 'FILE_HASH_MISMATCH');
    assertNotStored(h, path.fileName);
    // The narinfo that would have claimed it finds nothing.
    assertRejected(await putNarinfo(h, path.hashPart, path.narinfo(), basic(h.tokens.write)), 400, 'NAR_NOT_UPLOADED');
    await assertNothingVisible(h, path);
  }
});

test('structurally invalid NARs whose file name hash is correct: NAR_INVALID', async (t) => {
  const h = await buildTestApp(t);

  // Unsorted directory entries: swap the names of two same-length entries.
  const sorted = narBytes({
    type: 'directory',
    entries: {
      x1: { type: 'regular', contents: Buffer.from('one') },
      x2: { type: 'regular', contents: Buffer.from('two') },
    },
  });
  const unsorted = Buffer.from(sorted);
  const i1 = unsorted.indexOf('x1');
  const i2 = unsorted.indexOf('x2');
  assert.ok(i1 > 0 && i2 > i1);
  unsorted.write('x2', i1);
  unsorted.write('x1', i2);

  // Non-zero padding after the 6 content bytes.
  const badPadding = helloNar();
  assert.equal(badPadding.subarray(96, 102).toString(), 'hello\n');
  badPadding[103] = 0x01;

  // Trailing bytes after the root node.
  const trailing = Buffer.concat([helloNar(), Buffer.alloc(8)]);

  // Wrong magic (still sniffed as a raw NAR: the first 8 + 8 bytes look like one).
  const badMagic = helloNar();
  badMagic.write('nix-archive-2', 8);

  // Truncated mid-contents.
  const truncated = helloNar().subarray(0, 100);

  // Duplicate entries.
  const dup = Buffer.from(sorted);
  dup.write('x1', i2);

  const cases: [string, Buffer, 'none' | 'zstd' | 'xz'][] = [
    ['unsorted entries', unsorted, 'none'],
    ['unsorted entries, zstd', unsorted, 'zstd'],
    ['non-zero padding', badPadding, 'none'],
    ['non-zero padding, xz', badPadding, 'xz'],
    ['trailing bytes', trailing, 'none'],
    ['bad magic', badMagic, 'none'],
    ['truncated', truncated, 'none'],
    ['duplicate entry', dup, 'none'],
  ];
  for (const [what, nar, compression] of cases) {
    const up = invalidUpload(nar, compression);
    const res = await putNar(h, up, basic(h.tokens.write));
    assert.equal(res.statusCode, 400, `${what}: ${res.statusCode} ${res.body}`);
    assertRejected(res, 400, 'NAR_INVALID');
    assertNotStored(h, up.fileName);
    await assertNothingVisible(h, up);
  }

  // Compressed streams that are themselves corrupt (each named by its own hash): the uploader's
  // fault, so a 400 the client does not retry, never a 5xx.
  for (const compression of ['gzip', 'zstd', 'xz', 'bzip2', 'br'] as const) {
    const good = compressBytes(narBytes(sampleTree()), compression);
    const variants: [string, Buffer][] = [
      ['truncated', good.subarray(0, good.length - 7)],
      ['cut in half', good.subarray(0, Math.floor(good.length / 2))],
    ];
    if (compression !== 'br')
      variants.push(['garbage after the stream', Buffer.concat([good, Buffer.from('garbage!garbage!')])]);
    for (const [what, corrupt] of variants) {
      const corruptName = `${nix32Of(corrupt)}.nar${COMPRESSION_EXTENSION[compression]}`;
      const res = await putNar(h, { file: corrupt, fileName: corruptName }, basic(h.tokens.write));
      assert.equal(res.statusCode, 400, `${compression} ${what}: ${res.statusCode} ${res.body}`);
      assertRejected(res, 400, 'NAR_INVALID');
      assertNotStored(h, corruptName);
    }
  }

  // An empty body.
  const empty = Buffer.alloc(0);
  assertRejected(
    await putNar(h, { file: empty, fileName: `${nix32Of(empty)}.nar` }, basic(h.tokens.write)),
    400,
    'NAR_INVALID',
  );
});

test('narinfo claims that differ from the uploaded NAR are refused and the path stays invisible', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'xz' });
  assert.equal((await putNar(h, path, basic(h.tokens.write))).statusCode, 204);
  const other = makePath();
  const w = basic(h.tokens.write);

  const cases: [string, string, string][] = [
    ['NarHash', path.narinfo({ narHash: fileHashOf(other.nar) }), 'NAR_HASH_MISMATCH'],
    ['NarSize', path.narinfo({ narSize: path.nar.length + 1 }), 'NAR_SIZE_MISMATCH'],
    ['FileHash', path.narinfo({ fileHash: fileHashOf(other.file) }), 'FILE_HASH_MISMATCH'],
    ['FileSize', path.narinfo({ fileSize: path.file.length - 1 }), 'FILE_SIZE_MISMATCH'],
    ['Compression zstd', path.narinfo({ compression: 'zstd' }), 'COMPRESSION_MISMATCH'],
    ['Compression none', path.narinfo({ compression: 'none' }), 'COMPRESSION_MISMATCH'],
    // A missing Compression line means bzip2.
    ['Compression missing', path.narinfo().replace('Compression: xz\n', ''), 'COMPRESSION_MISMATCH'],
  ];
  for (const [what, text, code] of cases) {
    const res = await putNarinfo(h, path.hashPart, text, w);
    assert.equal(res.statusCode, 400, `${what}: ${res.body}`);
    assertRejected(res, 400, code);
    await assertNothingVisible(h, path);
  }
  // The honest narinfo still works afterwards.
  assert.equal((await putNarinfo(h, path.hashPart, path.narinfo(), w)).statusCode, 204);
});

test('a .nar holding gzip is gzip, not none, and the extension must fit the bytes', async (t) => {
  const h = await buildTestApp(t);
  const gz = makePath({ compression: 'gzip' });
  assert.equal((await putNar(h, gz, basic(h.tokens.write))).statusCode, 204);
  assertRejected(
    await putNarinfo(h, gz.hashPart, gz.narinfo({ compression: 'none' }), basic(h.tokens.write)),
    400,
    'COMPRESSION_MISMATCH',
  );
  await assertNothingVisible(h, gz);

  // xz bytes under a .zst name (named by their true hash), and zstd bytes under .nar.
  const xz = compressBytes(helloNar(), 'xz');
  const asZst = `${nix32Of(xz)}.nar.zst`;
  assertRejected(await putNar(h, { file: xz, fileName: asZst }, basic(h.tokens.write)), 400, 'COMPRESSION_MISMATCH');
  assertNotStored(h, asZst);
  const zst = compressBytes(helloNar(), 'zstd');
  const asNar = `${nix32Of(zst)}.nar`;
  assertRejected(await putNar(h, { file: zst, fileName: asNar }, basic(h.tokens.write)), 400, 'COMPRESSION_MISMATCH');
  assertNotStored(h, asNar);
});

test('a body that is no known compression is 415', async (t) => {
  const h = await buildTestApp(t);
  const junk = Buffer.from('PK\x03\x04 this is a zip file, not a NAR at all.............');
  const fileName = `${nix32Of(junk)}.nar`;
  assertRejected(await putNar(h, { file: junk, fileName }, basic(h.tokens.write)), 415, 'COMPRESSION_UNSUPPORTED');
  assertNotStored(h, fileName);
  assert.equal((await h.request('HEAD', `/main/nar/${fileName}`)).statusCode, 404);
  // Nix's other compressions (lz4, lzip, …) by their extension, before any byte is read.
  const lz4Name = `${nix32Of(junk)}.nar.lz4`;
  const lz4 = await putNar(h, { file: junk, fileName: lz4Name }, basic(h.tokens.write));
  assertRejected(lz4, 415, 'COMPRESSION_UNSUPPORTED');
  assert.match(lz4.body, /\.nar\.lz4 are not accepted: narhub takes \.nar\[\.xz\|\.bz2\|\.zst\|\.br\]/);
  assertNotStored(h, lz4Name);
});

test('URL must name a NAR uploaded to this cache', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'zstd' });
  // Never uploaded at all.
  assertRejected(await putNarinfo(h, path.hashPart, path.narinfo(), basic(h.tokens.write)), 400, 'NAR_NOT_UPLOADED');
  await assertNothingVisible(h, path);
  // Uploaded, but the URL points elsewhere.
  await putNar(h, path, basic(h.tokens.write));
  for (const url of [
    `https://elsewhere.example/nar/${path.fileName}`,
    `/nar/${path.fileName}`,
    `nar/../nar/${path.fileName}`,
    path.fileName,
  ]) {
    const res = await putNarinfo(h, path.hashPart, path.narinfo({ url }), basic(h.tokens.write));
    assert.ok(res.statusCode === 400, `URL ${url}: ${res.statusCode} ${res.body}`);
    assert.match(res.body, /^(NARINFO_INVALID|NAR_NOT_UPLOADED): [^\n]+\n$/);
  }
  await assertNothingVisible(h, path);
});

test('a missing reference is refused until the reference is uploaded', async (t) => {
  const h = await buildTestApp(t);
  const dep = makePath({ name: 'dep' });
  const hashPart = randomHashPart();
  const top = makePath({ name: 'top', hashPart, references: [dep.basename, `${hashPart}-top`] });
  await putNar(h, top, basic(h.tokens.write));
  const res = await putNarinfo(h, top.hashPart, top.narinfo(), basic(h.tokens.write));
  assertRejected(res, 400, 'REFERENCE_MISSING');
  assert.ok(res.body.includes(dep.basename), res.body);
  await assertNothingVisible(h, top);

  // A reference that exists under the same hash but another name is not the reference.
  const impostor = makePath({ name: 'not-dep', hashPart: dep.hashPart });
  await upload(h, impostor);
  assertRejected(await putNarinfo(h, top.hashPart, top.narinfo(), basic(h.tokens.write)), 400, 'REFERENCE_MISSING');
  await assertNothingVisible(h, top);

  // Now with the real reference present (in a fresh cache, since its hash is taken here).
  const h2 = await buildTestApp(t);
  await putNar(h2, top, basic(h2.tokens.write));
  assertRejected(await putNarinfo(h2, top.hashPart, top.narinfo(), basic(h2.tokens.write)), 400, 'REFERENCE_MISSING');
  await upload(h2, dep);
  const ok = await putNarinfo(h2, top.hashPart, top.narinfo(), basic(h2.tokens.write));
  assert.equal(ok.statusCode, 204, ok.body);
  assert.equal((await h2.request('GET', `/main/${top.hashPart}.narinfo`)).statusCode, 200);
});

test('malformed narinfos are refused with the line at fault', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath();
  await putNar(h, path, basic(h.tokens.write));
  const good = path.narinfo();
  const cases: [string, string][] = [
    ['CRLF', good.replaceAll('\n', '\r\n')],
    ['Key:value', good.replace('StorePath: ', 'StorePath:')],
    ['missing NarHash', good.replace(/^NarHash: .*\n/m, '')],
    ['missing NarSize', good.replace(/^NarSize: .*\n/m, '')],
    ['NarSize 0', good.replace(/^NarSize: .*$/m, 'NarSize: 0')],
    ['no final newline', good.slice(0, -1)],
    ['References: without its space', good.replace('References: \n', 'References:\n')],
    ['blank line', good.replace('\nURL', '\n\nURL')],
    ['NarHash without algorithm', good.replace('NarHash: sha256:', 'NarHash: ')],
    ['duplicate References', `${good}References: \n`],
    ['empty body', ''],
    ['not a narinfo', '<html>hello</html>\n'],
  ];
  for (const [what, text] of cases) {
    const res = await putNarinfo(h, path.hashPart, text, basic(h.tokens.write));
    assert.equal(res.statusCode, 400, `${what}: ${res.statusCode} ${res.body}`);
    assert.match(
      res.body,
      /^(NARINFO_PARSE_ERROR|NARINFO_INVALID|HASH_INVALID): [^\n]+\n$/,
      `${what}: ${JSON.stringify(res.body)}`,
    );
    await assertNothingVisible(h, path);
  }
});

test('StorePath must belong at the URL hash; invalid hash parts and NAR names are refused', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath();
  await putNar(h, path, basic(h.tokens.write));
  const elsewhere = randomHashPart();
  assertRejected(await putNarinfo(h, elsewhere, path.narinfo(), basic(h.tokens.write)), 400, 'NARINFO_INVALID');
  assert.equal((await h.request('GET', `/main/${elsewhere}.narinfo`)).statusCode, 404);
  await assertNothingVisible(h, path);

  // A StorePath outside /nix/store.
  const foreign = path.narinfo().replace(`StorePath: /nix/store/`, 'StorePath: /gnu/store/');
  const res = await putNarinfo(h, path.hashPart, foreign, basic(h.tokens.write));
  assert.equal(res.statusCode, 400, res.body);
  await assertNothingVisible(h, path);

  // Hash parts with letters outside nix32 (e, o, u, t), the wrong length, or upper case.
  for (const bad of ['e'.repeat(32), path.hashPart.slice(1), `${path.hashPart}0`, path.hashPart.toUpperCase()]) {
    assertRejected(await putNarinfo(h, bad, path.narinfo(), basic(h.tokens.write)), 400, 'STORE_PATH_INVALID');
    assert.ok((await h.request('GET', `/main/${bad}.narinfo`)).statusCode >= 400);
  }

  // NAR file names: not <nix32 sha256>.nar[ext].
  const hash = nix32Of(path.file);
  for (const name of [
    'foo.nar',
    `${hash}.tar`,
    `${hash.slice(1)}.nar`,
    `${hash.replace(/^./, 'e')}.nar`,
    `${hash}.nar.xz.xz`,
  ]) {
    const r = await putNar(h, { file: path.file, fileName: name }, basic(h.tokens.write));
    assertRejected(r, 400, 'BAD_REQUEST');
    assertNotStored(h, name);
  }
  // Well formed, but no compression narhub takes has that extension (gzip's is plain .nar).
  const gz = `${hash}.nar.gz`;
  assertRejected(
    await putNar(h, { file: path.file, fileName: gz }, basic(h.tokens.write)),
    415,
    'COMPRESSION_UNSUPPORTED',
  );
  assertNotStored(h, gz);
});

test('bodies over the configured maxima are 413', async (t) => {
  const h = await buildTestApp(t, { maxNarSize: 2048, maxSmallFileSize: 300 });
  const big = makePath({ tree: { type: 'regular', contents: Buffer.alloc(4000, 7) } });
  assert.ok(big.file.length > 2048);
  assertRejected(await putNar(h, big, basic(h.tokens.write)), 413, 'BODY_TOO_LARGE');
  assertNotStored(h, big.fileName);

  // Without a Content-Length (chunked), the limit still holds while streaming.
  const streamed = await h.app.inject({
    method: 'PUT',
    url: `/main/nar/${big.fileName}`,
    headers: { ...basic(h.tokens.write), 'content-type': 'application/x-nix-nar' },
    payload: Readable.from([big.file.subarray(0, 1000), big.file.subarray(1000, 2500), big.file.subarray(2500)]),
  });
  assertRejected(streamed, 413, 'BODY_TOO_LARGE');
  assertNotStored(h, big.fileName);
  await assertNothingVisible(h, big);

  // A small NAR is fine, but its narinfo (over 300 bytes with a signature) is not.
  const small = makePath({ tree: { type: 'regular', contents: Buffer.from('x') } });
  assert.equal((await putNar(h, small, basic(h.tokens.write))).statusCode, 204);
  const text = small.narinfo();
  const padded = `${text}X-Padding: ${'p'.repeat(400)}\n`;
  assertRejected(await putNarinfo(h, small.hashPart, padded, basic(h.tokens.write)), 413, 'BODY_TOO_LARGE');
  await assertNothingVisible(h, small);

  const drv = `${randomHashPart()}-big.drv`;
  assertRejected(
    await h.request('PUT', `/main/log/${drv}`, {
      body: 'l'.repeat(301),
      headers: { ...basic(h.tokens.write), 'content-type': 'text/plain; charset=utf-8' },
    }),
    413,
    'BODY_TOO_LARGE',
  );
  assert.equal((await h.request('GET', `/main/log/${drv}`)).statusCode, 404);
});

test('a compressed NAR file under maxNarSize whose NAR is larger is 413 in every compression; none kept', async (t) => {
  const maxNarSize = 1024 * 1024;
  const h = await buildTestApp(t, { maxNarSize });
  for (const compression of ['zstd', 'xz', 'bzip2', 'gzip', 'br'] as const) {
    // 8 MiB of zeros: the file is a few kilobytes at most, the NAR eight times the limit.
    const bomb = makePath({ tree: { type: 'regular', contents: Buffer.alloc(8 * maxNarSize) }, compression });
    assert.ok(bomb.file.length < maxNarSize / 8, `${compression}: the file itself is far under the limit`);
    const res = await putNar(h, bomb, basic(h.tokens.write));
    assertRejected(res, 413, 'BODY_TOO_LARGE');
    assert.match(res.body, /NAR is larger than the limit of 1048576 bytes/, compression);
    assertNotStored(h, bomb.fileName);
    await assertNothingVisible(h, bomb);
  }
  // A NAR of exactly the limit, compressed, is fine.
  const edge = narBytes({ type: 'regular', contents: Buffer.alloc(1) }).length;
  const fits = makePath({
    tree: { type: 'regular', contents: Buffer.alloc(maxNarSize - edge + 1) },
    compression: 'zstd',
  });
  assert.equal(fits.nar.length, maxNarSize);
  await upload(h, fits);
  assert.equal((await h.request('GET', `/main/${fits.hashPart}.narinfo`)).statusCode, 200);
});

test("an xz NAR needing over 80 MiB to decode is refused with the reason; Nix's preset -9 is fine", async (t) => {
  const h = await buildTestApp(t);
  const nar = narBytes({ type: 'regular', contents: randomBytes(100_000) });
  // xz chooses no smaller dictionary for input from a pipe: the header asks for what it is told.
  const xz = (args: string[]) => execFileSync('xz', ['-c', ...args], { input: nar });
  const fileOf = (file: Buffer) => ({ file, fileName: narFileNameFor(file, 'xz') });
  const huge = fileOf(xz(['--lzma2=dict=128MiB']));
  const res = await putNar(h, huge, basic(h.tokens.write));
  assertRejected(res, 400, 'NAR_INVALID');
  assert.match(res.body, /xz: .*[Mm]emory usage limit/);
  assertNotStored(h, huge.fileName);

  const preset9 = fileOf(xz(['-9']));
  assert.equal((await putNar(h, preset9, basic(h.tokens.write))).statusCode, 204);
});

test("writes need a write token for this cache: 401 without, 403 with read or another cache's token", async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'other' }] });
  const path = makePath({ compression: 'zstd' });
  const drv = `${randomHashPart()}-x.drv`;

  const attempts: [string, Record<string, string>, number, string][] = [
    ['no token', {}, 401, 'UNAUTHORIZED'],
    ['unknown token', bearer('nh_not-a-real-token'), 401, 'UNAUTHORIZED'],
    ['garbage Authorization', { authorization: 'Basic !!!' }, 401, 'UNAUTHORIZED'],
    ['read token', basic(h.tokens.read), 403, 'FORBIDDEN'],
    ['write token of another cache', basic(h.tokensFor.other!.write), 403, 'FORBIDDEN'],
    ['admin token of another cache', basic(h.tokensFor.other!.admin), 403, 'FORBIDDEN'],
  ];
  for (const [what, auth, status, code] of attempts) {
    const nar = await putNar(h, path, auth);
    assertRejected(nar, status, code);
    if (status === 401) assert.match(nar.headers['www-authenticate'] as string, /^Basic\b/, what);
    assertNotStored(h, path.fileName);
    const log = await h.request('PUT', `/main/log/${drv}`, {
      body: 'log',
      headers: { ...auth, 'content-type': 'text/plain' },
    });
    assertRejected(log, status, code);
    assert.equal((await h.request('GET', `/main/log/${drv}`)).statusCode, 404);
    const ls = await h.request('PUT', `/main/${path.hashPart}.ls`, {
      body: '{"version":1,"root":{"type":"regular","size":1}}',
      headers: { ...auth, 'content-type': 'application/json' },
    });
    assertRejected(ls, status, code);
  }

  // A narinfo PUT by the unauthorised, after an authorised NAR upload.
  assert.equal((await putNar(h, path, basic(h.tokens.write))).statusCode, 204);
  for (const [what, auth, status, code] of attempts) {
    const res = await putNarinfo(h, path.hashPart, path.narinfo(), auth);
    assertRejected(res, status, code);
    if (status === 401) assert.match(res.headers['www-authenticate'] as string, /^Basic\b/, what);
    await assertNothingVisible(h, path);
  }
  // Write and admin tokens of this cache may.
  assert.equal((await putNarinfo(h, path.hashPart, path.narinfo(), basic(h.tokens.admin))).statusCode, 204);
});

test("a narinfo PUT that changes an existing path's content is 409 and changes nothing", async (t) => {
  const h = await buildTestApp(t);
  const dep = makePath({ name: 'dep' });
  await upload(h, dep);
  const path = makePath({ name: 'app', compression: 'xz' });
  await upload(h, path);
  const served = (await h.request('GET', `/main/${path.hashPart}.narinfo`)).body;

  // Other content under the same store path.
  const impostor = makePath({ name: 'app', hashPart: path.hashPart, compression: 'xz' });
  assert.equal((await putNar(h, impostor, basic(h.tokens.write))).statusCode, 204);
  const cases: [string, string][] = [
    ['another NAR', impostor.narinfo()],
    ['an added reference', path.narinfo({ references: [dep.basename] })],
    ['another name', path.narinfo({ storePath: `/nix/store/${path.hashPart}-other` })],
    ['an added CA', path.narinfo({ ca: `fixed:r:sha256:${'0'.repeat(52)}` })],
  ];
  for (const [what, text] of cases) {
    const res = await putNarinfo(h, path.hashPart, text, basic(h.tokens.write));
    assert.equal(res.statusCode, 409, `${what}: ${res.body}`);
    assertRejected(res, 409, 'PATH_CONTENT_CONFLICT');
    assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body, served, what);
  }
  // The impostor's NAR was never claimed.
  assert.equal((await h.request('HEAD', `/main/nar/${impostor.fileName}`)).statusCode, 404);
});

test('a compressed narinfo that expands past the small-file limit is 413', async (t) => {
  const h = await buildTestApp(t, { maxSmallFileSize: 4096 });
  const path = makePath();
  await putNar(h, path, basic(h.tokens.write));
  const bomb = gzipSync(Buffer.from(`${path.narinfo()}X-Padding: ${'a'.repeat(1_000_000)}\n`));
  assert.ok(bomb.length < 4096);
  const res = await h.request('PUT', `/main/${path.hashPart}.narinfo`, {
    body: bomb,
    headers: { ...basic(h.tokens.write), 'content-type': 'text/x-nix-narinfo', 'content-encoding': 'gzip' },
  });
  assertRejected(res, 413, 'BODY_TOO_LARGE');
  await assertNothingVisible(h, path);
});
