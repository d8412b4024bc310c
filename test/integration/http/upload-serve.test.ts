// Upload exactly as Nix does (PUT nar/…, then PUT <hash>.narinfo) and read it back.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { contentAddressedStorePath, parseContentAddress } from '../../../src/nix/content-address.js';
import { formatHash, parseHash } from '../../../src/nix/hash.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { generateKeyPair, publicKeyOf, signNarInfo, verifyNarInfoSig } from '../../../src/nix/signing.js';
import {
  basic,
  buildTestApp,
  compressBytes,
  fileHashOf,
  makePath,
  putNar,
  putNarinfo,
  randomHashPart,
  sampleTree,
  upload,
  type Compression,
  type TestApp,
  type TestPath,
} from '../../helpers/build-app.js';

const COMPRESSIONS: { compression: Compression; ext: string }[] = [
  { compression: 'none', ext: '' },
  { compression: 'gzip', ext: '' },
  { compression: 'zstd', ext: '.zst' },
  { compression: 'xz', ext: '.xz' },
  { compression: 'bzip2', ext: '.bz2' },
  { compression: 'br', ext: '.br' },
];

async function assertServed(h: TestApp, path: TestPath, uploaderSigs: string[] = []): Promise<void> {
  const res = await h.request('GET', `/main/${path.hashPart}.narinfo`);
  assert.equal(res.statusCode, 200, res.body);
  assert.match(res.headers['content-type'] as string, /^text\/x-nix-narinfo\b/);
  const text = res.body;
  const info = parseNarInfo(text); // the strict parser: LF only, `Key: value`, final newline

  assert.equal(info.storePath, path.storePath);
  assert.equal(info.url, `nar/${path.fileName}`);
  assert.equal(info.compression, path.compression);
  assert.equal(info.fileHash, fileHashOf(path.file));
  assert.equal(info.fileSize, path.file.length);
  assert.equal(info.narHash, fileHashOf(path.nar), 'NarHash is served as sha256:<nix32>');
  assert.equal(info.narSize, path.nar.length);
  assert.deepEqual(info.references, [...path.references].sort());
  if (path.references.length === 0)
    assert.ok(text.includes('\nReferences: \n'), `empty References keeps its trailing space:\n${text}`);

  // Signed by the cache's own key, verifiable with the public key `cache info` shows.
  const keys = h.publicKeys('main');
  assert.deepEqual(
    keys.map((k) => k.name),
    ['main-1'],
  );
  const own = info.sigs.filter((s) => s.startsWith('main-1:'));
  assert.equal(own.length, 1, `one main-1 signature in:\n${text}`);
  assert.ok(verifyNarInfoSig(keys, info, own[0]!), 'the main-1 signature verifies');
  for (const sig of uploaderSigs) assert.ok(info.sigs.includes(sig), `uploader signature ${sig} is kept`);
  assert.deepEqual(info.sigs, [...info.sigs].sort(), 'Sig lines are sorted');
  assert.equal(info.sigs.length, 1 + uploaderSigs.length);

  // Nix's field order.
  const keysInOrder = text
    .trimEnd()
    .split('\n')
    .map((l) => l.slice(0, l.indexOf(':')));
  const order = [
    'StorePath',
    'URL',
    'Compression',
    'FileHash',
    'FileSize',
    'NarHash',
    'NarSize',
    'References',
    'Deriver',
    'System',
    'Sig',
    'CA',
  ];
  const ranks = keysInOrder.map((k) => order.indexOf(k));
  assert.ok(
    ranks.every((r, i) => r >= 0 && (i === 0 || r >= ranks[i - 1]!)),
    `field order: ${keysInOrder.join(', ')}`,
  );

  // HEAD of the narinfo: same headers, no body.
  const head = await h.request('HEAD', `/main/${path.hashPart}.narinfo`);
  assert.equal(head.statusCode, 200);
  assert.equal(head.body, '');
  assert.equal(head.headers['content-type'], res.headers['content-type']);
  assert.equal(Number(head.headers['content-length']), Buffer.byteLength(text));

  // The NAR: exact bytes, rangeable, never transport-encoded.
  const nar = await h.request('GET', `/main/nar/${path.fileName}`);
  assert.equal(nar.statusCode, 200);
  assert.ok(nar.rawPayload.equals(path.file), 'the NAR file is served byte for byte');
  assert.equal(nar.headers['accept-ranges'], 'bytes');
  assert.equal(Number(nar.headers['content-length']), path.file.length);
  assert.equal(nar.headers['content-encoding'], undefined);
  assert.match(nar.headers['content-type'] as string, /^application\/x-nix-nar\b/);

  const narHead = await h.request('HEAD', `/main/nar/${path.fileName}`);
  assert.equal(narHead.statusCode, 200);
  assert.equal(narHead.body, '');
  for (const header of ['content-type', 'content-length', 'accept-ranges', 'cache-control']) {
    assert.equal(narHead.headers[header], nar.headers[header], `HEAD ${header}`);
  }
  assert.equal(narHead.headers['content-encoding'], undefined);
}

for (const { compression, ext } of COMPRESSIONS) {
  test(`round trip with compression ${compression}: signed, normalised narinfo and the exact NAR bytes`, async (t) => {
    const h = await buildTestApp(t);
    const uploader = generateKeyPair('uploader.example.org-1');
    const path = makePath({ name: `hello-${compression}`, compression });
    assert.ok(path.fileName.endsWith(`.nar${ext}`), path.fileName);
    const uploaderSig = signNarInfo(uploader.secret, path.info());

    const putN = await putNar(h, path, basic(h.tokens.write));
    assert.ok(
      putN.statusCode >= 200 && putN.statusCode < 300 && putN.statusCode !== 202,
      `PUT nar → ${putN.statusCode} ${putN.body}`,
    );
    const putI = await putNarinfo(h, path.hashPart, path.narinfo({ sigs: [uploaderSig] }), basic(h.tokens.write));
    assert.ok(
      putI.statusCode >= 200 && putI.statusCode < 300 && putI.statusCode !== 202,
      `PUT narinfo → ${putI.statusCode} ${putI.body}`,
    );

    await assertServed(h, path, [uploaderSig]);
    // The uploader's signature still verifies against the served (normalised) narinfo.
    const served = parseNarInfo((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body);
    assert.ok(verifyNarInfoSig([publicKeyOf(uploader.secret)], served, uploaderSig));
  });
}

test("the served narinfo is narhub's own: NarHash in any accepted encoding, FileHash/FileSize filled in", async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'zstd' });
  const narHashHex = formatHash(parseHash(fileHashOf(path.nar)), 'base16');
  // Nix ≥ 2.x may omit FileHash/FileSize; NarHash may be hex or SRI.
  const info = path.info({ narHash: narHashHex });
  delete info.fileHash;
  delete info.fileSize;
  const text = [
    `StorePath: ${info.storePath}`,
    `URL: ${info.url}`,
    'Compression: zstd',
    `NarHash: ${narHashHex}`,
    `NarSize: ${info.narSize}`,
    'References: ',
    '',
  ].join('\n');
  await putNar(h, path, basic(h.tokens.write));
  const res = await putNarinfo(h, path.hashPart, text, basic(h.tokens.write));
  assert.equal(res.statusCode, 204, res.body);
  await assertServed(h, path);

  const other = makePath({ compression: 'xz' });
  await putNar(h, other, basic(h.tokens.write));
  const sri = await putNarinfo(
    h,
    other.hashPart,
    other.narinfo({ narHash: narHashSriFor(other) }),
    basic(h.tokens.write),
  );
  assert.equal(sri.statusCode, 204, sri.body);
  await assertServed(h, other);
});

function narHashSriFor(path: TestPath): string {
  return formatHash(parseHash(fileHashOf(path.nar)), 'sri');
}

test('references: served sorted, a self-reference is fine, Deriver is kept', async (t) => {
  const h = await buildTestApp(t);
  const depA = makePath({ name: 'dep-a' });
  const depB = makePath({ name: 'dep-b' });
  await upload(h, depA);
  await upload(h, depB);
  const hashPart = randomHashPart();
  const self = `${hashPart}-top`;
  const deriver = `${randomHashPart()}-top.drv`;
  const top = makePath({ name: 'top', hashPart, references: [depB.basename, self, depA.basename], deriver });
  await upload(h, top);
  await assertServed(h, top);
  const info = parseNarInfo((await h.request('GET', `/main/${hashPart}.narinfo`)).body);
  assert.deepEqual(info.references, [depA.basename, depB.basename, self].sort());
  assert.equal(info.deriver, deriver);
});

test('HEAD and GET of a NAR are 404 while it is only pending, 200 once a narinfo commits it', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'xz' });
  const put = await putNar(h, path, basic(h.tokens.write));
  assert.equal(put.statusCode, 204, put.body);

  // Nix HEADs before uploading: a 200 here would make it skip the upload (docs/protocol.md, Compression).
  assert.equal((await h.request('HEAD', `/main/nar/${path.fileName}`)).statusCode, 404);
  assert.equal((await h.request('GET', `/main/nar/${path.fileName}`)).statusCode, 404);
  assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).statusCode, 404);

  // The same NAR again (Nix retried): still fine, still pending.
  assert.equal((await putNar(h, path, basic(h.tokens.write))).statusCode, 204);
  assert.equal((await h.request('HEAD', `/main/nar/${path.fileName}`)).statusCode, 404);

  assert.equal((await putNarinfo(h, path.hashPart, path.narinfo(), basic(h.tokens.write))).statusCode, 204);
  assert.equal((await h.request('HEAD', `/main/nar/${path.fileName}`)).statusCode, 200);
  assert.equal((await h.request('GET', `/main/nar/${path.fileName}`)).statusCode, 200);

  // Re-uploading a committed NAR is accepted and changes nothing.
  assert.equal((await putNar(h, path, basic(h.tokens.write))).statusCode, 204);
  assert.ok((await h.request('GET', `/main/nar/${path.fileName}`)).rawPayload.equals(path.file));
});

test('a NAR uploaded to one cache is not visible in, nor usable from, another', async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'other' }] });
  const path = makePath();
  await upload(h, path);
  assert.equal((await h.request('GET', `/other/${path.hashPart}.narinfo`)).statusCode, 404);
  assert.equal((await h.request('HEAD', `/other/nar/${path.fileName}`)).statusCode, 404);
  // A narinfo in `other` pointing at main's NAR is refused: the NAR was never uploaded there.
  const res = await putNarinfo(h, path.hashPart, path.narinfo(), basic(h.tokensFor.other!.write), 'other');
  assert.equal(res.statusCode, 400);
  assert.match(res.body, /^NAR_NOT_UPLOADED: /);
});

test('re-PUT of the identical narinfo is idempotent', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'zstd' });
  await upload(h, path);
  const first = (await h.request('GET', `/main/${path.hashPart}.narinfo`)).body;
  const again = await putNarinfo(h, path.hashPart, path.narinfo(), basic(h.tokens.write));
  assert.equal(again.statusCode, 204, again.body);
  assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body, first);
  // Re-PUT of exactly what narhub serves (what `nix store sign` does when nothing changed).
  const same = await putNarinfo(h, path.hashPart, first, basic(h.tokens.write));
  assert.equal(same.statusCode, 204, same.body);
  assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body, first);
});

test('CA, System and Deriver survive normalisation; Deriver unknown-deriver means none', async (t) => {
  const h = await buildTestApp(t);
  // A content-addressed path: its store path is the one its CA gives (checked since issue 18).
  const draft = makePath({ compression: 'gzip' });
  const ca = `fixed:r:${fileHashOf(draft.nar)}`;
  const storePath = contentAddressedStorePath(draft.name, parseContentAddress(ca), [], false);
  const path = makePath({ compression: 'gzip', tree: draft.tree, hashPart: storePath.slice(11, 43) });
  const deriver = `${randomHashPart()}-x.drv`;
  await upload(h, path, { narinfo: path.narinfo({ ca, system: 'x86_64-linux', deriver }) });
  const text = (await h.request('GET', `/main/${path.hashPart}.narinfo`)).body;
  const info = parseNarInfo(text);
  assert.equal(info.ca, ca);
  assert.equal(info.system, 'x86_64-linux');
  assert.equal(info.deriver, deriver);
  assert.ok(text.endsWith(`CA: ${ca}\n`), 'CA comes last, after the Sig lines');

  const other = makePath();
  await upload(h, other, {
    narinfo: other.narinfo().replace('References: \n', 'References: \nDeriver: unknown-deriver\n'),
  });
  assert.equal(parseNarInfo((await h.request('GET', `/main/${other.hashPart}.narinfo`)).body).deriver, undefined);
});

test('a narinfo PUT with Content-Encoding (Nix 2.32+ narinfo-compression) is decoded and served plain', async (t) => {
  const h = await buildTestApp(t);
  for (const [encoding, encode] of [
    ['gzip', gzipSync],
    ['br', brotliCompressSync],
    ['zstd', (b: Buffer) => compressBytes(b, 'zstd')],
    ['xz', (b: Buffer) => compressBytes(b, 'xz')],
  ] as const) {
    const path = makePath({ compression: 'zstd' });
    await putNar(h, path, basic(h.tokens.write));
    const res = await h.request('PUT', `/main/${path.hashPart}.narinfo`, {
      body: encode(Buffer.from(path.narinfo())),
      headers: { ...basic(h.tokens.write), 'content-type': 'text/x-nix-narinfo', 'content-encoding': encoding },
    });
    assert.equal(res.statusCode, 204, `${encoding}: ${res.body}`);
    const got = await h.request('GET', `/main/${path.hashPart}.narinfo`);
    assert.equal(got.headers['content-encoding'], undefined, encoding);
    assert.equal(parseNarInfo(got.body).storePath, path.storePath);
  }
  // An encoding narhub cannot decode, or a body that is not what the header says.
  const path = makePath();
  await putNar(h, path, basic(h.tokens.write));
  for (const [encoding, body] of [
    ['compress', Buffer.from(path.narinfo())],
    ['gzip', Buffer.from(path.narinfo())],
  ] as const) {
    const res = await h.request('PUT', `/main/${path.hashPart}.narinfo`, {
      body,
      headers: { ...basic(h.tokens.write), 'content-type': 'text/x-nix-narinfo', 'content-encoding': encoding },
    });
    assert.equal(res.statusCode, 400, `${encoding}: ${res.body}`);
    assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).statusCode, 404);
  }
});

test('a NAR streamed without Content-Length, in odd-sized chunks, is verified the same way', async (t) => {
  const h = await buildTestApp(t);
  for (const compression of ['none', 'xz', 'bzip2'] as const) {
    const path = makePath({ compression, tree: sampleTree(`big-${compression}`) });
    const chunks: Buffer[] = [];
    for (let i = 0; i < path.file.length; i += 7) chunks.push(path.file.subarray(i, i + 7));
    const res = await h.app.inject({
      method: 'PUT',
      url: `/main/nar/${path.fileName}`,
      headers: { ...basic(h.tokens.write), 'content-type': 'application/x-nix-nar' },
      payload: Readable.from(chunks),
    });
    assert.equal(res.statusCode, 204, `${compression}: ${res.body}`);
    assert.equal((await putNarinfo(h, path.hashPart, path.narinfo(), basic(h.tokens.write))).statusCode, 204);
    assert.ok((await h.request('GET', `/main/nar/${path.fileName}`)).rawPayload.equals(path.file));
  }
});
