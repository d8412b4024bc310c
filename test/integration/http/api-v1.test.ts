// narhub's JSON API at /api/v1: the bulk missing-paths query and the native upload (metadata
// line + raw NAR, compressed to zstd by the server, or the client's zstd frame, stored as sent
// once verified; committed under the narinfo PUT's rules).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress, decompress as zstdDecompress } from 'zstd-napi';
import { MISSING_PATHS_PER_REQUEST } from '../../../src/http/routes/api-v1.js';
import { SMALL_NAR_SIZE } from '../../../src/cache/native-upload.js';
import { MAX_LISTING_ENTRIES } from '../../../src/nix/nar/nar-parser.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { generateKeyPair, signNarInfo, verifyNarInfoSig } from '../../../src/nix/signing.js';
import {
  basic,
  bearer,
  buildTestApp,
  fileHashOf,
  makePath,
  nix32Of,
  randomHashPart,
  upload,
  type NarTree,
  type TestApp,
  type TestPath,
} from '../../helpers/build-app.js';
import { tempFiles } from '../../helpers/temp-files.js';

/**
 * The native upload takes NARs up to SMALL_NAR_SIZE whole, in memory, and streams larger ones
 * through a codec thread: the tests that check what it verifies and stores run with both.
 */
const NAR_SIZES: { label: string; tree: (name: string) => NarTree | undefined }[] = [
  { label: 'small NAR', tree: () => undefined },
  {
    label: 'streamed NAR',
    tree: (name) => ({
      type: 'directory',
      entries: { [name]: { type: 'regular', contents: randomBytes(SMALL_NAR_SIZE + 4096) } },
    }),
  },
];

interface Metadata {
  storePath?: unknown;
  narHash?: unknown;
  narSize?: unknown;
  references?: unknown;
  deriver?: unknown;
  ca?: unknown;
  sigs?: unknown;
  [extra: string]: unknown;
}

function metadataOf(path: TestPath, overrides: Metadata = {}): Metadata {
  return {
    storePath: path.storePath,
    narHash: fileHashOf(path.nar),
    narSize: path.nar.length,
    references: path.references.map((r) => `/nix/store/${r}`),
    ...overrides,
  };
}

function nativeBody(path: TestPath, overrides: Metadata = {}, nar: Buffer = path.nar): Buffer {
  return Buffer.concat([Buffer.from(`${JSON.stringify(metadataOf(path, overrides))}\n`), nar]);
}

function putPath(
  h: TestApp,
  hashPart: string,
  body: Buffer,
  auth: Record<string, string> = bearer(h.tokens.write),
  cache = 'main',
) {
  return h.request('PUT', `/api/v1/caches/${cache}/paths/${hashPart}`, {
    body,
    headers: { ...auth, 'content-type': 'application/x-narhub-path' },
  });
}

function missing(h: TestApp, storePaths: unknown, auth: Record<string, string> = {}, cache = 'main') {
  return h.request('POST', `/api/v1/caches/${cache}/missing-paths`, {
    body: JSON.stringify({ storePaths }),
    headers: { ...auth, 'content-type': 'application/json' },
  });
}

/** A JSON error: `{ code, message }`, the code also in x-narhub-error. */
function assertJsonError(res: LightMyRequestResponse, status: number, code: string, message?: RegExp): void {
  assert.equal(res.statusCode, status, `expected ${status} ${code}, got ${res.statusCode} ${res.body}`);
  assert.match(res.headers['content-type'] as string, /^application\/json\b/);
  const body = JSON.parse(res.body) as { code: string; message: string };
  assert.equal(body.code, code, res.body);
  assert.equal(res.headers['x-narhub-error'], code);
  assert.ok(body.message.length > 0 && !body.message.includes('\n'), `one-line reason: ${res.body}`);
  if (message) assert.match(body.message, message);
}

const narHashName = (path: TestPath) => `${nix32Of(path.nar)}.nar.zst`;

async function assertNothingVisible(h: TestApp, path: TestPath): Promise<void> {
  assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).statusCode, 404, 'no narinfo');
  assert.equal((await h.request('HEAD', `/main/nar/${narHashName(path)}`)).statusCode, 404, 'no NAR');
  assert.equal(existsSync(join(h.storeRoot, 'main', 'nar', narHashName(path))), false, 'no bytes under the name');
  assert.deepEqual(tempFiles(h.storeRoot), [], 'no temp files left behind');
}

// missing-paths --------------------------------------------------------------------------------

test('missing-paths answers which store paths the cache lacks, in order, without repeats', async (t) => {
  const h = await buildTestApp(t);
  const a = makePath({ name: 'a' });
  const b = makePath({ name: 'b' });
  await upload(h, a);
  await upload(h, b);
  const c = makePath({ name: 'c' });
  const sameHashOtherName = `/nix/store/${a.hashPart}-not-a`;

  const res = await missing(h, [c.storePath, a.storePath, sameHashOtherName, b.storePath, c.storePath]);
  assert.equal(res.statusCode, 200, res.body);
  assert.match(res.headers['content-type'] as string, /^application\/json\b/);
  assert.deepEqual(JSON.parse(res.body), { missing: [c.storePath, sameHashOtherName], upstreamKeyNames: [] });

  assert.deepEqual(JSON.parse((await missing(h, [])).body), { missing: [], upstreamKeyNames: [] });
});

test('missing-paths over the most paths one request may hold answers exactly which are missing', async (t) => {
  const h = await buildTestApp(t);
  const present = [makePath({ name: 'p0' }), makePath({ name: 'p1' }), makePath({ name: 'p2' })];
  for (const p of present) await upload(h, p);
  const asked = Array.from({ length: MISSING_PATHS_PER_REQUEST - 3 }, (_, i) => `/nix/store/${randomHashPart()}-q${i}`);
  for (const [i, p] of present.entries()) asked.splice(i * 3000, 0, p.storePath);

  const res = await missing(h, asked);
  assert.equal(res.statusCode, 200, res.body);
  const answer = JSON.parse(res.body) as { missing: string[] };
  assert.deepEqual(
    answer.missing,
    asked.filter((p) => !present.some((q) => q.storePath === p)),
  );
});

test('missing-paths needs read rights on a private cache', async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'secret', private: true }] });
  const p = makePath();
  await upload(h, p, { cache: 'secret' });

  assertJsonError(await missing(h, [p.storePath], {}, 'secret'), 401, 'UNAUTHORIZED');
  assert.match((await missing(h, [p.storePath], {}, 'secret')).headers['www-authenticate'] as string, /^Basic/);
  assertJsonError(
    await missing(h, [p.storePath], bearer('nh_not-a-token'), 'secret'),
    401,
    'UNAUTHORIZED',
    /unknown, expired or revoked/,
  );
  assertJsonError(await missing(h, [p.storePath], bearer(h.tokens.admin), 'secret'), 401, 'UNAUTHORIZED');
  for (const auth of [bearer(h.tokensFor.secret!.read), basic(h.tokensFor.secret!.write)]) {
    const ok = await missing(h, [p.storePath], auth, 'secret');
    assert.equal(ok.statusCode, 200, ok.body);
    assert.deepEqual(JSON.parse(ok.body), { missing: [], upstreamKeyNames: [] });
  }
  // A public cache is readable by anyone.
  assert.equal((await missing(h, [p.storePath])).statusCode, 200);
  // An unknown cache answers as a private one does (its name cannot be probed).
  assertJsonError(await missing(h, [p.storePath], {}, 'nope'), 401, 'UNAUTHORIZED');
});

test('missing-paths refuses bad input with a reason', async (t) => {
  const h = await buildTestApp(t);
  const url = '/api/v1/caches/main/missing-paths';
  const post = (body: string, contentType = 'application/json') =>
    h.request('POST', url, { body, headers: { 'content-type': contentType } });

  assertJsonError(await post('{"storePaths": [', 'application/json'), 400, 'BAD_REQUEST');
  assertJsonError(await post('[]'), 400, 'BAD_REQUEST', /^body: Expected object/);
  assertJsonError(await post('{}'), 400, 'BAD_REQUEST', /^body\.storePaths: Expected required property/);
  assertJsonError(
    await post('{"storePaths": "/nix/store/x"}'),
    400,
    'BAD_REQUEST',
    /^body\.storePaths: Expected array/,
  );
  assertJsonError(
    await post('{"storePaths": [], "paths": []}'),
    400,
    'BAD_REQUEST',
    /^body\.paths: Unexpected property/,
  );
  assertJsonError(
    await post('{"storePaths": ["/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x", 5]}'),
    400,
    'BAD_REQUEST',
    /^body\.storePaths\[1\]: Expected string/,
  );
  assertJsonError(
    await missing(h, ['/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x', '/tmp/x']),
    400,
    'STORE_PATH_INVALID',
    /^storePaths\[1\]: invalid store path/,
  );
  assertJsonError(
    await missing(h, ['/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x']),
    400,
    'STORE_PATH_INVALID',
    /storePaths\[0\].*nix32/,
  );
  assertJsonError(await post('{"storePaths": []}', 'text/x-whatever'), 415, 'BAD_REQUEST');
  const tooMany = Array.from({ length: 10_001 }, () => '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x');
  assertJsonError(await missing(h, tooMany), 400, 'BAD_REQUEST', /^body\.storePaths: .*10000/);
  // A body past its limit is refused before it is parsed.
  const huge = `{"storePaths": ["${'a'.repeat(4 * 1024 * 1024)}"]}`;
  assertJsonError(
    await h.request('POST', '/api/v1/caches/main/missing-paths', {
      body: huge,
      headers: { 'content-type': 'application/json' },
    }),
    413,
    'BODY_TOO_LARGE',
  );
  // Unknown API routes answer in JSON too.
  assertJsonError(await h.request('GET', '/api/v1/nothing-here'), 404, 'NOT_FOUND');
});

// Native upload: the happy path ------------------------------------------------------------------

for (const size of NAR_SIZES) {
  test(`a native upload is validated, compressed to zstd, committed and signed (${size.label})`, async (t) => {
    const h = await buildTestApp(t);
    const dep = makePath({ name: 'dep', tree: size.tree('dep') });
    const path = makePath({
      name: 'app',
      tree: size.tree('app'),
      references: [dep.basename],
      deriver: `${randomHashPart()}-app.drv`,
    });

    const first = await putPath(h, dep.hashPart, nativeBody(dep));
    assert.equal(first.statusCode, 201, first.body);
    const uploader = generateKeyPair('uploader-1');
    const uploaderSig = signNarInfo(uploader.secret, path.info());
    const res = await putPath(
      h,
      path.hashPart,
      nativeBody(path, { deriver: `/nix/store/${path.info().deriver}`, sigs: [uploaderSig] }),
    );
    assert.equal(res.statusCode, 201, res.body);
    const answer = JSON.parse(res.body) as Record<string, unknown>;
    assert.equal(answer.storePath, path.storePath);
    assert.equal(answer.created, true);
    assert.equal(answer.stored, true);
    assert.equal(answer.url, `nar/${narHashName(path)}`);
    assert.equal(answer.compression, 'zstd');
    assert.equal(answer.narHash, fileHashOf(path.nar));
    assert.equal(answer.narSize, path.nar.length);

    // The narinfo as Nix reads it, signed by the cache and keeping the uploader's signature.
    const got = await h.request('GET', `/main/${path.hashPart}.narinfo`);
    assert.equal(got.statusCode, 200, got.body);
    const info = parseNarInfo(got.body);
    assert.equal(info.storePath, path.storePath);
    assert.equal(info.url, `nar/${narHashName(path)}`);
    assert.equal(info.compression, 'zstd');
    assert.equal(info.narHash, fileHashOf(path.nar));
    assert.equal(info.narSize, path.nar.length);
    assert.deepEqual(info.references, [dep.basename]);
    assert.equal(info.deriver, path.info().deriver);
    assert.ok(info.sigs.includes(uploaderSig), got.body);
    const own = info.sigs.find((s) => s.startsWith('main-1:'));
    assert.ok(own && verifyNarInfoSig(h.publicKeys(), info, own), 'main-1 signature verifies');

    // The file it names: zstd, hashes as FileHash says, decompresses to the NAR.
    const nar = await h.request('GET', `/main/${info.url}`);
    assert.equal(nar.statusCode, 200);
    const file = nar.rawPayload;
    assert.equal(file.length, info.fileSize);
    assert.equal(fileHashOf(file), info.fileHash);
    assert.ok(zstdDecompress(file).equals(path.nar), 'the stored file decompresses to the NAR');
    assert.equal((await h.request('HEAD', `/main/${info.url}`)).statusCode, 200);
    // narhub's own listing of it.
    const ls = await h.request('GET', `/main/${path.hashPart}.ls`);
    assert.equal(ls.statusCode, 200);
    assert.equal((JSON.parse(ls.body) as { version: number }).version, 1);

    // The path now counts as present.
    assert.deepEqual(JSON.parse((await missing(h, [dep.storePath, path.storePath])).body), {
      missing: [],
      upstreamKeyNames: [],
    });
  });
}

for (const size of NAR_SIZES) {
  test(`uploading the same path again stores nothing new and may add signatures (${size.label})`, async (t) => {
    const h = await buildTestApp(t);
    const path = makePath({ tree: size.tree('again') });
    assert.equal((await putPath(h, path.hashPart, nativeBody(path))).statusCode, 201);
    const before = (await h.request('GET', `/main/${path.hashPart}.narinfo`)).body;

    const again = await putPath(h, path.hashPart, nativeBody(path));
    assert.equal(again.statusCode, 200, again.body);
    assert.deepEqual(
      {
        created: (JSON.parse(again.body) as { created: boolean }).created,
        stored: (JSON.parse(again.body) as { stored: boolean }).stored,
      },
      { created: false, stored: false },
    );
    assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body, before);

    const extra = signNarInfo(generateKeyPair('extra-1').secret, path.info());
    assert.equal((await putPath(h, path.hashPart, nativeBody(path, { sigs: [extra] }))).statusCode, 200);
    assert.ok(parseNarInfo((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body).sigs.includes(extra));

    // A second store path with the very same NAR shares the file.
    const twin = makePath({ name: 'twin', tree: path.tree });
    const res = await putPath(h, twin.hashPart, nativeBody(twin));
    assert.equal(res.statusCode, 201, res.body);
    assert.equal((JSON.parse(res.body) as { stored: boolean }).stored, false);
    assert.equal(
      parseNarInfo((await h.request('GET', `/main/${twin.hashPart}.narinfo`)).body).url,
      `nar/${narHashName(path)}`,
    );

    // Different content for a committed path is a conflict.
    const other = makePath({ hashPart: path.hashPart, name: path.name });
    assertJsonError(await putPath(h, path.hashPart, nativeBody(other)), 409, 'PATH_CONTENT_CONFLICT');
  });
}

// Native upload: every rejection ---------------------------------------------------------------

for (const size of NAR_SIZES) {
  test(`a NarHash that does not match the NAR is refused and nothing appears (${size.label})`, async (t) => {
    const h = await buildTestApp(t);
    const path = makePath({ tree: size.tree('hash') });
    const wrong = fileHashOf(Buffer.from('something else'));
    assertJsonError(
      await putPath(h, path.hashPart, nativeBody(path, { narHash: wrong })),
      400,
      'NAR_HASH_MISMATCH',
      /does not match the uploaded NAR/,
    );
    assert.equal((await h.request('HEAD', `/main/nar/${wrong.slice(7)}.nar.zst`)).statusCode, 404);
    assert.equal(existsSync(join(h.storeRoot, 'main', 'nar', `${wrong.slice(7)}.nar.zst`)), false);
    await assertNothingVisible(h, path);
    // SRI and base16 spellings of the right hash are fine.
    const sri = `sha256-${createHash('sha256').update(path.nar).digest('base64')}`;
    assert.equal((await putPath(h, path.hashPart, nativeBody(path, { narHash: sri }))).statusCode, 201);
  });
}

for (const size of NAR_SIZES) {
  test(`a NarSize that does not match the NAR is refused, larger or smaller (${size.label})`, async (t) => {
    const h = await buildTestApp(t);
    const path = makePath({ tree: size.tree('size') });
    assertJsonError(
      await putPath(h, path.hashPart, nativeBody(path, { narSize: path.nar.length + 8 })),
      400,
      'NAR_SIZE_MISMATCH',
    );
    await assertNothingVisible(h, path);
    assertJsonError(
      await putPath(h, path.hashPart, nativeBody(path, { narSize: path.nar.length - 8 })),
      400,
      'NAR_SIZE_MISMATCH',
    );
    await assertNothingVisible(h, path);
    assertJsonError(
      await putPath(h, path.hashPart, nativeBody(path, { narSize: 0 })),
      400,
      'BAD_REQUEST',
      /narSize must be a positive integer/,
    );
  });
}

for (const size of NAR_SIZES) {
  test(`a tampered NAR is refused: a flipped byte, a broken structure, a truncation (${size.label})`, async (t) => {
    const h = await buildTestApp(t);
    const path = makePath({ tree: size.tree('tampered') });

    const flipped = Buffer.from(path.nar);
    flipped[flipped.length - 40] = flipped[flipped.length - 40]! ^ 0xff;
    const res = await putPath(h, path.hashPart, nativeBody(path, {}, flipped));
    assert.equal(res.statusCode, 400, res.body);
    assert.ok(['NAR_HASH_MISMATCH', 'NAR_INVALID'].includes((JSON.parse(res.body) as { code: string }).code), res.body);
    await assertNothingVisible(h, path);

    const broken = Buffer.from(path.nar);
    broken.write('garbage!', 8 + 13 + 3 + 8); // inside the `(` token after the magic
    assertJsonError(await putPath(h, path.hashPart, nativeBody(path, {}, broken)), 400, 'NAR_INVALID');
    await assertNothingVisible(h, path);

    assertJsonError(
      await putPath(h, path.hashPart, nativeBody(path, {}, path.nar.subarray(0, path.nar.length - 16))),
      400,
      'NAR_INVALID',
      /end of archive/,
    );
    await assertNothingVisible(h, path);

    assertJsonError(await putPath(h, path.hashPart, nativeBody(path, {}, Buffer.alloc(0))), 400, 'NAR_INVALID');
    await assertNothingVisible(h, path);
  });
}

test('a NAR with more entries than a listing may have is stored and served, without a listing', async (t) => {
  const h = await buildTestApp(t, { maxNarSize: 1 << 30 });
  const entries: Record<string, NarTree> = {};
  for (let i = 0; i <= MAX_LISTING_ENTRIES; i++)
    entries[`f${String(i).padStart(7, '0')}`] = { type: 'regular', contents: Buffer.alloc(0) };
  const path = makePath({ name: 'many-files', tree: { type: 'directory', entries } });
  const res = await putPath(h, path.hashPart, nativeBody(path));
  assert.equal(res.statusCode, 201, res.body);
  const info = parseNarInfo((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body);
  assert.equal(info.narSize, path.nar.length);
  assert.equal((await h.request('HEAD', `/main/${info.url}`)).statusCode, 200);
  // No listing (Nix treats it as absent), and no listing file in storage.
  assert.equal((await h.request('GET', `/main/${path.hashPart}.ls`)).statusCode, 404);
  assert.equal(existsSync(join(h.storeRoot, 'main', 'listing', `${narHashName(path)}.ls`)), false);
});

test('a reference the cache lacks is refused before the NAR is read', async (t) => {
  const h = await buildTestApp(t);
  const dep = makePath({ name: 'dep' });
  const path = makePath({ name: 'app', references: [dep.basename] });
  assertJsonError(
    await putPath(h, path.hashPart, nativeBody(path)),
    400,
    'REFERENCE_MISSING',
    new RegExp(dep.basename),
  );
  await assertNothingVisible(h, path);
  // A self-reference is fine.
  const self = makePath({ name: 'self' });
  const selfRef = makePath({ name: 'self', hashPart: self.hashPart, tree: self.tree, references: [self.basename] });
  assert.equal((await putPath(h, selfRef.hashPart, nativeBody(selfRef))).statusCode, 201);
});

test('a bad metadata line is refused with the reason', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath();
  const raw = (line: string, nar: Buffer = path.nar) =>
    putPath(h, path.hashPart, Buffer.concat([Buffer.from(line), nar]));

  assertJsonError(await raw('not json\n'), 400, 'BAD_REQUEST', /not valid JSON/);
  assertJsonError(await raw('[1,2]\n'), 400, 'BAD_REQUEST', /JSON object/);
  assertJsonError(await putPath(h, path.hashPart, Buffer.alloc(0)), 400, 'BAD_REQUEST', /empty body/);
  assertJsonError(
    await raw(JSON.stringify(metadataOf(path)), Buffer.alloc(0)),
    400,
    'BAD_REQUEST',
    /ended before the newline/,
  );
  assertJsonError(
    await raw(`{"storePath": "${'x'.repeat(1024 * 1024)}"}\n`),
    400,
    'BAD_REQUEST',
    /longer than 1048576 bytes/,
  );
  const cases: [Metadata, string, RegExp][] = [
    [{ storePath: undefined }, 'BAD_REQUEST', /storePath must be a string/],
    [{ storePath: '/tmp/x' }, 'STORE_PATH_INVALID', /^metadata: storePath: invalid store path/],
    [{ storePath: `/nix/store/${randomHashPart()}-pkg` }, 'NARINFO_INVALID', /does not belong at/],
    [{ narHash: undefined }, 'BAD_REQUEST', /narHash must be a string/],
    [{ narHash: 'sha256:nope' }, 'HASH_INVALID', /^metadata: narHash:/],
    [{ narHash: `sha1:${'a'.repeat(40)}` }, 'HASH_INVALID', /must be sha256/],
    [{ narSize: '12' }, 'BAD_REQUEST', /narSize must be a positive integer/],
    [{ narSize: 1.5 }, 'BAD_REQUEST', /narSize must be a positive integer/],
    [{ references: 'none' }, 'BAD_REQUEST', /references must be an array/],
    [{ references: ['relative-path'] }, 'STORE_PATH_INVALID', /references\[0\]/],
    [{ deriver: `/nix/store/${randomHashPart()}-not-a-drv` }, 'STORE_PATH_INVALID', /not a \.drv/],
    [{ sigs: 'main-1:abc' }, 'BAD_REQUEST', /sigs must be an array of strings/],
    [{ sigs: ['no-colon'] }, 'NARINFO_INVALID', /malformed signature/],
    [{ colour: 'blue' }, 'BAD_REQUEST', /unknown field "colour"/],
  ];
  for (const [overrides, code, message] of cases) {
    const res = await putPath(h, path.hashPart, nativeBody(path, overrides));
    assertJsonError(res, res.statusCode === 413 ? 413 : 400, code, message);
  }
  // A signature under the cache's own key name must verify (the narinfo PUT's rule).
  const forged = signNarInfo(generateKeyPair('main-1').secret, path.info());
  assertJsonError(
    await putPath(h, path.hashPart, nativeBody(path, { sigs: [forged] })),
    400,
    'NARINFO_INVALID',
    /does not verify/,
  );
  // A NAR over the server's limit is refused from its declared size.
  const small = await buildTestApp(t, { maxNarSize: 64 });
  assertJsonError(
    await putPath(small, path.hashPart, nativeBody(path), bearer(small.tokens.write)),
    413,
    'BODY_TOO_LARGE',
  );
  await assertNothingVisible(h, path);
});

test('a native upload needs write rights on the cache', async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'other' }] });
  const path = makePath();
  const body = nativeBody(path);
  assertJsonError(await putPath(h, path.hashPart, body, {}), 401, 'UNAUTHORIZED', /needs a token with write rights/);
  assertJsonError(
    await putPath(h, path.hashPart, body, bearer('nh_bogus')),
    401,
    'UNAUTHORIZED',
    /unknown, expired or revoked/,
  );
  assertJsonError(await putPath(h, path.hashPart, body, bearer(h.tokens.read)), 403, 'FORBIDDEN');
  assertJsonError(await putPath(h, path.hashPart, body, bearer(h.tokensFor.other!.write)), 403, 'FORBIDDEN');
  const revoked = h.token('main', 'write');
  h.service.tokens.revoke(revoked.id);
  assertJsonError(await putPath(h, path.hashPart, body, bearer(revoked.token)), 401, 'UNAUTHORIZED');
  await assertNothingVisible(h, path);
  assertJsonError(await putPath(h, path.hashPart, body, bearer(h.tokens.write), 'nope'), 401, 'UNAUTHORIZED');
  assertJsonError(await putPath(h, 'not-a-hash', body), 400, 'STORE_PATH_INVALID');
  // Basic auth (netrc) works as well as Bearer.
  assert.equal((await putPath(h, path.hashPart, body, basic(h.tokens.write))).statusCode, 201);
});

test('the native and the Nix upload share one commit: a path from either counts for the other', async (t) => {
  const h = await buildTestApp(t);
  const dep = makePath({ name: 'dep', compression: 'xz' });
  await upload(h, dep); // Nix protocol
  const path = makePath({ name: 'app', references: [dep.basename] });
  assert.equal((await putPath(h, path.hashPart, nativeBody(path))).statusCode, 201); // native
  // The Nix client sees the native path exactly like any other, and cannot change it.
  const res = await h.request('PUT', `/main/${path.hashPart}.narinfo`, {
    body: path.narinfo({
      url: `nar/${narHashName(path)}`,
      compression: 'zstd',
      fileHash: undefined,
      fileSize: undefined,
    }),
    headers: { ...basic(h.tokens.write), 'content-type': 'text/x-nix-narinfo' },
  });
  assert.equal(res.statusCode, 204, res.body);
});

// Native upload of a client's zstd frame ---------------------------------------------------------

/**
 * The NAR as a client that compresses sends it: one zstd frame (a skippable frame first, so it
 * is surely not narhub's own output).
 */
function clientFrame(nar: Buffer, level = 19): Buffer {
  const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
  return Buffer.concat([skippable, zstdCompress(nar, { compressionLevel: level })]);
}

for (const size of NAR_SIZES) {
  test(`a client's zstd frame is verified, stored byte for byte, not compressed again (${size.label})`, async (t) => {
    const h = await buildTestApp(t);
    const path = makePath({ name: 'framed', tree: size.tree('framed') });
    const frame = clientFrame(path.nar);
    const res = await putPath(h, path.hashPart, nativeBody(path, { compression: 'zstd' }, frame));
    assert.equal(res.statusCode, 201, res.body);
    const answer = JSON.parse(res.body) as Record<string, unknown>;
    assert.deepEqual(
      [answer.url, answer.compression, answer.fileHash, answer.fileSize, answer.narHash, answer.narSize],
      [`nar/${narHashName(path)}`, 'zstd', fileHashOf(frame), frame.length, fileHashOf(path.nar), path.nar.length],
    );
    const info = parseNarInfo((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body);
    assert.deepEqual(
      [info.url, info.compression, info.fileHash, info.fileSize, info.narHash, info.narSize],
      [`nar/${narHashName(path)}`, 'zstd', fileHashOf(frame), frame.length, fileHashOf(path.nar), path.nar.length],
    );
    assert.ok(verifyNarInfoSig(h.publicKeys(), info, info.sigs.find((s) => s.startsWith('main-1:'))!));
    const served = await h.request('GET', `/main/${info.url}`);
    assert.equal(served.statusCode, 200);
    assert.ok(served.rawPayload.equals(frame), 'the stored file is the frame the client sent');
    assert.equal((await h.request('GET', `/main/${path.hashPart}.ls`)).statusCode, 200, 'listed');
    // "none" is the raw body, as without the field.
    const raw = makePath({ name: 'raw', tree: size.tree('raw') });
    assert.equal((await putPath(h, raw.hashPart, nativeBody(raw, { compression: 'none' }))).statusCode, 201);
  });
}

for (const size of NAR_SIZES) {
  test(`a zstd frame decoding to another NAR than declared is refused, nothing appears (${size.label})`, async (t) => {
    const h = await buildTestApp(t);
    const path = makePath({ name: 'lying', tree: size.tree('lying') });
    const send = (nar: Buffer, overrides: Metadata = {}) =>
      putPath(h, path.hashPart, nativeBody(path, { compression: 'zstd', ...overrides }, clientFrame(nar, 3)));

    // Another NAR of the same size: a flipped byte inside a file's contents.
    const other = Buffer.from(path.nar);
    other[other.length - 40] = other[other.length - 40]! ^ 0xff;
    const res = await send(other);
    assert.equal(res.statusCode, 400, res.body);
    assert.ok(['NAR_HASH_MISMATCH', 'NAR_INVALID'].includes((JSON.parse(res.body) as { code: string }).code), res.body);
    await assertNothingVisible(h, path);
    // A frame of a valid NAR, but not this one.
    const stranger = makePath({ name: 'stranger', tree: size.tree('stranger') });
    assertJsonError(
      await send(stranger.nar, { narSize: stranger.nar.length }),
      400,
      'NAR_HASH_MISMATCH',
      /does not match the uploaded NAR/,
    );
    await assertNothingVisible(h, path);
    // Longer and shorter than NarSize once decoded.
    assertJsonError(await send(path.nar, { narSize: path.nar.length - 8 }), 400, 'NAR_SIZE_MISMATCH');
    assertJsonError(await send(path.nar, { narSize: path.nar.length + 8 }), 400, 'NAR_SIZE_MISMATCH');
    await assertNothingVisible(h, path);
    // A truncated frame.
    const frame = clientFrame(path.nar, 3);
    assertJsonError(
      await putPath(h, path.hashPart, nativeBody(path, { compression: 'zstd' }, frame.subarray(0, frame.length - 10))),
      400,
      'NAR_INVALID',
      /zstd/,
    );
    await assertNothingVisible(h, path);
    // Far more bytes than any frame of such a NAR takes.
    const padded = Buffer.concat([frame, Buffer.from([0x50, 0x2a, 0x4d, 0x18, 0, 0, 4, 0]), Buffer.alloc(256 * 1024)]);
    assertJsonError(
      await putPath(h, path.hashPart, nativeBody(path, { compression: 'zstd' }, padded)),
      400,
      'NAR_SIZE_MISMATCH',
      /zstd frame is longer/,
    );
    await assertNothingVisible(h, path);
    // The right frame still goes in afterwards.
    assert.equal((await send(path.nar)).statusCode, 201);
  });
}

for (const size of NAR_SIZES) {
  test(`a body declared zstd that is not a zstd frame is refused and nothing appears (${size.label})`, async (t) => {
    const h = await buildTestApp(t);
    const path = makePath({ name: 'notzstd', tree: size.tree('notzstd') });
    const send = (body: Buffer) => putPath(h, path.hashPart, nativeBody(path, { compression: 'zstd' }, body));
    for (const body of [path.nar, gzipSync(path.nar), Buffer.from('not a frame at all')]) {
      assertJsonError(await send(body), 400, 'COMPRESSION_MISMATCH', /body is not a zstd frame/);
      await assertNothingVisible(h, path);
    }
    // zstd's magic, then garbage.
    assertJsonError(
      await send(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(5000)])),
      400,
      'NAR_INVALID',
    );
    await assertNothingVisible(h, path);
    assertJsonError(await send(Buffer.alloc(0)), 400, 'NAR_INVALID', /empty/);
    assertJsonError(
      await putPath(h, path.hashPart, nativeBody(path, { compression: 'xz' })),
      400,
      'BAD_REQUEST',
      /compression must be "none" or "zstd"/,
    );
    await assertNothingVisible(h, path);
  });
}
