// A Nix upload's byte work (file hash, decompression, NAR validation) runs on codec threads;
// what narhub records and answers is what the validator on the event loop says of the same
// bytes: NarHash, NarSize, FileHash, FileSize and the listing for a valid NAR in every
// compression, and the very same `NAR_INVALID: <reason> at byte <n>` for an invalid one; and a
// client that goes away leaves nothing behind, on disk or on the threads.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatListing } from '../../../src/nix/nar/listing.js';
import { NarParser } from '../../../src/nix/nar/nar-parser.js';
import { createNarsRepo } from '../../../src/db/nars-repo.js';
import type { Compression } from '../../../src/io/compression.js';
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
  randomHashPart,
  type NarTree,
} from '../../helpers/build-app.js';
import { tempFiles } from '../../helpers/temp-files.js';

const ALL: Compression[] = ['none', 'gzip', 'zstd', 'xz', 'bzip2', 'br'];

function tree(label: string): NarTree {
  return {
    type: 'directory',
    entries: {
      bin: {
        type: 'directory',
        entries: {
          [label]: { type: 'regular', executable: true, contents: Buffer.from(`#!/bin/sh\necho ${label}\n`) },
        },
      },
      // Over a MiB, so it spans several slabs and, compressed, several decoder steps.
      'data.txt': { type: 'regular', contents: Buffer.from(`${label} `.repeat(300_000)) },
      link: { type: 'symlink', target: `bin/${label}` },
    },
  };
}

test('a valid upload in every compression records what the validator on the loop computes', async (t) => {
  const h = await buildTestApp(t);
  const auth = basic(h.tokens.write);
  const nars = createNarsRepo(h.db);
  for (const compression of ALL) {
    const path = makePath({ tree: tree(`pkg-${compression}`), compression });
    const res = await putNar(h, path, auth);
    assert.equal(res.statusCode, 204, `${compression}: ${res.body}`);

    const parser = new NarParser();
    parser.update(path.nar);
    const want = parser.finish();
    const row = nars.get(h.main.id, path.fileName);
    assert.ok(row, compression);
    assert.equal(row.state, 'pending', compression);
    assert.equal(row.compression, compression);
    assert.equal(row.narHash, want.narHash, compression);
    assert.equal(row.narSize, want.narSize, compression);
    assert.equal(row.fileHash, fileHashOf(path.file), compression);
    assert.equal(row.fileSize, path.file.length, compression);

    // The narinfo Nix writes for it is accepted (its NarHash, NarSize, FileHash, FileSize all
    // match), and the listing served is the one the loop's parser builds.
    const info = await putNarinfo(h, path.hashPart, path.narinfo(), auth);
    assert.equal(info.statusCode, 204, `${compression}: ${info.body}`);
    const ls = await h.request('GET', `/main/${path.hashPart}.ls`);
    assert.equal(ls.statusCode, 200, compression);
    assert.equal(ls.body, formatListing(want.listing!), compression);
  }
});

test('an invalid NAR in every compression is refused with the reason the loop gives', async (t) => {
  const h = await buildTestApp(t);
  const auth = basic(h.tokens.write);
  const nar = narBytes(tree('bad'));
  // An entry name's padding made non-zero: valid compression, invalid NAR, found mid-stream.
  const at = nar.indexOf(Buffer.from('link')) + 'link'.length;
  nar[at] = 0x01;
  let reason = '';
  try {
    new NarParser().update(nar);
  } catch (err) {
    reason = (err as Error).message;
  }
  assert.equal(reason, `non-zero padding at byte ${at}`);
  for (const compression of ALL) {
    const file = compressBytes(nar, compression);
    const res = await putNar(h, { file, fileName: narFileNameFor(file, compression) }, auth);
    assert.equal(res.statusCode, 400, compression);
    assert.equal(res.body, `NAR_INVALID: ${reason}\n`, compression);
  }
  // A NAR cut short, in every compression: the end of the stream is where it fails.
  const whole = narBytes(tree('cut'));
  const cut = whole.subarray(0, whole.length - 16);
  for (const compression of ALL) {
    const file = compressBytes(cut, compression);
    const res = await putNar(h, { file, fileName: narFileNameFor(file, compression) }, auth);
    assert.equal(res.body, `NAR_INVALID: unexpected end of archive at byte ${cut.length}\n`, compression);
  }
  // Nothing of these became visible.
  assert.equal((await h.request('GET', `/main/${randomHashPart()}.narinfo`)).statusCode, 404);
});

test('a client that goes away mid-upload leaves nothing behind, and the threads serve the next upload', async (t) => {
  const h = await buildTestApp(t);
  const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
  const auth = basic(h.tokens.write);
  const nars = createNarsRepo(h.db);
  // Incompressible, so half the body is megabytes: the server is well into it when the cut comes.
  const noise = (): NarTree => ({ type: 'regular', contents: randomBytes(6 * 1024 * 1024) });
  const big = makePath({ tree: noise(), compression: 'zstd' });
  const native = makePath({ tree: noise() });
  const meta = {
    storePath: native.storePath,
    narHash: fileHashOf(native.nar),
    narSize: native.nar.length,
    references: [],
  };
  const uploads: [string, string, Buffer][] = [
    ['zstd', `/main/nar/${big.fileName}`, big.file],
    [
      'native',
      `/api/v1/caches/main/paths/${native.hashPart}`,
      Buffer.concat([Buffer.from(`${JSON.stringify(meta)}\n`), native.nar]),
    ],
  ];
  for (const [what, path, body] of uploads) {
    // Half the body, then the connection is cut.
    await new Promise<void>((resolve) => {
      const req = request(`${address}${path}`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(body.length) },
      });
      req.on('error', () => resolve());
      req.write(body.subarray(0, body.length >> 1), () => setTimeout(() => req.destroy(), 200));
    });
    // The server notices, fails the upload and removes its temporary file.
    for (let i = 0; i < 100 && tempFiles(h.storeRoot).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(tempFiles(h.storeRoot), [], `${what}: a temporary file was left behind`);
    assert.equal(existsSync(join(h.storeRoot, 'main', 'nar', big.fileName)), false, what);
    assert.equal(nars.get(h.main.id, big.fileName), undefined, what);
  }
  // The same uploads, whole, go through.
  assert.equal((await putNar(h, big, auth)).statusCode, 204);
  const res = await h.request('PUT', uploads[1]![1], {
    body: uploads[1]![2],
    headers: { ...auth, 'content-type': 'application/x-narhub-path' },
  });
  assert.equal(res.statusCode, 201, res.body);
});
