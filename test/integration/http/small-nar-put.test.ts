// A Nix-protocol NAR PUT of at most SMALL_UPLOAD_SIZE bytes is received whole and checked on
// the event loop (`cache/nar-ingest.ts`, ingestSmall), unless it decodes to more than 1 MiB or is
// xz or bzip2, which stream as before. Either way it must record exactly what the NAR parser
// computes of the same bytes, and refuse what the streaming pass refuses, with the same words.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SMALL_UPLOAD_SIZE } from '../../../src/cache/nar-ingest.js';
import { createNarsRepo } from '../../../src/db/nars-repo.js';
import type { Compression } from '../../../src/io/compression.js';
import { formatListing } from '../../../src/nix/nar/listing.js';
import { NarParser } from '../../../src/nix/nar/nar-parser.js';
import {
  basic,
  buildTestApp,
  compressBytes,
  fileHashOf,
  makePath,
  narBytes,
  narFileNameFor,
  putNar,
  putNarinfo,
  sampleTree,
  type NarTree,
} from '../../helpers/build-app.js';

const ALL: Compression[] = ['none', 'gzip', 'zstd', 'xz', 'bzip2', 'br'];

test("small NAR PUTs in every compression record the parser's hashes, sizes and listing, and commit", async (t) => {
  const h = await buildTestApp(t);
  const auth = basic(h.tokens.write);
  const nars = createNarsRepo(h.db);
  const trees: [string, NarTree][] = [
    ['small', sampleTree('small')],
    // Small on the wire, but over 1 MiB once decoded: streamed after all.
    ['expanding', { type: 'regular', contents: Buffer.alloc(3 * 1024 * 1024, 'a') }],
  ];
  for (const compression of ALL) {
    for (const [kind, tree] of trees) {
      if (kind === 'expanding' && compression === 'none') continue;
      const what = `${kind} ${compression}`;
      const path = makePath({ tree, compression });
      assert.ok(path.file.length <= SMALL_UPLOAD_SIZE, `${what}: ${path.file.length} bytes on the wire`);
      const res = await putNar(h, path, auth);
      assert.equal(res.statusCode, 204, `${what}: ${res.body}`);
      const parser = new NarParser();
      parser.update(path.nar);
      const want = parser.finish();
      const row = nars.get(h.main.id, path.fileName);
      assert.ok(row, what);
      assert.deepEqual(
        [row.state, row.compression, row.narHash, row.narSize, row.fileHash, row.fileSize],
        ['pending', compression, want.narHash, want.narSize, fileHashOf(path.file), path.file.length],
        what,
      );
      const info = await putNarinfo(h, path.hashPart, path.narinfo(), auth);
      assert.equal(info.statusCode, 204, `${what}: ${info.body}`);
      const nar = await h.request('GET', `/main/nar/${path.fileName}`);
      assert.equal(nar.statusCode, 200, what);
      assert.ok(nar.rawPayload.equals(path.file), `${what}: the stored file is the uploaded one`);
      const ls = await h.request('GET', `/main/${path.hashPart}.ls`);
      assert.equal(ls.body, formatListing(want.listing!), what);
    }
  }
});

test("small NAR PUTs invalid, cut short, corrupt or misnamed: the streaming pass's refusal, none kept", async (t) => {
  const h = await buildTestApp(t);
  const auth = basic(h.tokens.write);
  const nars = createNarsRepo(h.db);
  const nar = narBytes(sampleTree('bad'));
  const at = nar.indexOf(Buffer.from('link')) + 'link'.length;
  nar[at] = 0x01;
  const whole = narBytes(sampleTree('cut'));
  const cut = whole.subarray(0, whole.length - 16);
  for (const compression of ALL) {
    const bad = compressBytes(nar, compression);
    const badName = narFileNameFor(bad, compression);
    const res = await putNar(h, { file: bad, fileName: badName }, auth);
    assert.equal(res.body, `NAR_INVALID: non-zero padding at byte ${at}\n`, compression);
    const short = compressBytes(cut, compression);
    const shortName = narFileNameFor(short, compression);
    const cutRes = await putNar(h, { file: short, fileName: shortName }, auth);
    assert.equal(cutRes.body, `NAR_INVALID: unexpected end of archive at byte ${cut.length}\n`, compression);
    assert.equal(nars.get(h.main.id, badName), undefined, compression);
    assert.equal(nars.get(h.main.id, shortName), undefined, compression);
  }
  // A zstd stream cut inside its frame: the decoder's complaint, as a 400.
  const zst = compressBytes(whole, 'zstd');
  const truncated = zst.subarray(0, zst.length - 8);
  const truncatedRes = await putNar(h, { file: truncated, fileName: narFileNameFor(truncated, 'zstd') }, auth);
  assert.equal(truncatedRes.statusCode, 400);
  assert.match(truncatedRes.body, /^NAR_INVALID: cannot decompress the body as zstd: /);
  // A valid NAR under another file's name, and a zstd file named .nar.xz.
  const good = compressBytes(whole, 'zstd');
  const wrongName = narFileNameFor(compressBytes(narBytes(sampleTree('other')), 'zstd'), 'zstd');
  const misnamed = await putNar(h, { file: good, fileName: wrongName }, auth);
  assert.equal(misnamed.statusCode, 400);
  assert.match(misnamed.body, /^FILE_HASH_MISMATCH: file hash sha256:\S+ does not match the name /);
  const wrongExt = await putNar(h, { file: good, fileName: narFileNameFor(good, 'xz') }, auth);
  assert.equal(wrongExt.body, 'COMPRESSION_MISMATCH: file name ends in .xz but the body is zstd\n');
  assert.equal(nars.get(h.main.id, wrongName), undefined);
});
