// A narinfo's `CA` is checked against its NAR and its store path before the path is committed, on
// the Nix protocol (narinfo PUT, the NAR uploaded before it) and the native upload (metadata line,
// then the NAR, hashed in the same pass); a contradicting one is a 400 with its reason, and nothing
// becomes visible.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { SMALL_NAR_SIZE } from '../../../src/cache/native-upload.js';
import {
  contentAddressedStorePath,
  formatContentAddress,
  type ContentAddress,
} from '../../../src/nix/content-address.js';
import type { HashAlgo } from '../../../src/nix/hash.js';
import {
  basic,
  bearer,
  buildTestApp,
  makePath,
  narBytes,
  putNar,
  putNarinfo,
  visibility,
  type Compression,
  type NarTree,
  type TestApp,
  type TestPath,
} from '../../helpers/build-app.js';

const digest = (algo: HashAlgo, data: Uint8Array) => new Uint8Array(createHash(algo).update(data).digest());

interface CaPath {
  path: TestPath;
  ca: string;
}

/**
 * A path whose store path is the one `ca` gives (so only the content can contradict it).
 * `references` are basenames.
 */
function caPath(
  name: string,
  tree: NarTree,
  ca: ContentAddress,
  opts: { compression?: Compression; references?: string[] } = {},
): CaPath {
  const storePath = contentAddressedStorePath(name, ca, opts.references ?? [], false);
  const hashPart = storePath.slice('/nix/store/'.length, '/nix/store/'.length + 32);
  const path = makePath({
    name,
    tree,
    hashPart,
    references: opts.references ?? [],
    compression: opts.compression ?? 'none',
  });
  return { path, ca: formatContentAddress(ca) };
}

const file = (text: string | Buffer): NarTree => ({ type: 'regular', contents: Buffer.from(text) });
const dir = (label: string): NarTree => ({ type: 'directory', entries: { a: file(label), b: file(`${label}-b`) } });

/** Honest paths of every kind; `big` makes NARs past SMALL_NAR_SIZE, which take the streaming passes. */
function honest(label: string, big: boolean): CaPath[] {
  const pad = big ? randomBytes(SMALL_NAR_SIZE + 1000) : Buffer.alloc(0);
  const flat = Buffer.concat([Buffer.from(`flat ${label}\n`), pad]);
  const tree = big ? { type: 'directory' as const, entries: { a: file(flat) } } : dir(label);
  const text = `text ${label}\n`;
  return [
    caPath('rec-sha256', tree, {
      method: 'recursive',
      hash: { algo: 'sha256', digest: digest('sha256', narBytes(tree)) },
    }),
    caPath(
      'rec-sha1',
      tree,
      { method: 'recursive', hash: { algo: 'sha1', digest: digest('sha1', narBytes(tree)) } },
      { compression: 'xz' },
    ),
    caPath('flat-sha256', file(flat), { method: 'flat', hash: { algo: 'sha256', digest: digest('sha256', flat) } }),
    caPath(
      'flat-sha512',
      file(flat),
      { method: 'flat', hash: { algo: 'sha512', digest: digest('sha512', flat) } },
      { compression: 'zstd' },
    ),
    caPath('text', file(text), {
      method: 'text',
      hash: { algo: 'sha256', digest: digest('sha256', Buffer.from(text)) },
    }),
  ];
}

/** Paths whose CA contradicts the NAR, each with the reason narhub must give. */
function contradicting(label: string): [string, CaPath, RegExp][] {
  const flat = Buffer.from(`flat ${label}\n`);
  const lie = Buffer.from(`not ${label}\n`);
  const tree = dir(label);
  const lieHash = (algo: HashAlgo, data: Uint8Array) => ({ algo, digest: digest(algo, data) });
  const input = makePath({ name: 'input-addressed', tree: file(flat) });
  return [
    [
      'fixed:r:sha256 of another NAR',
      caPath('rec', tree, { method: 'recursive', hash: lieHash('sha256', narBytes(dir(`${label}x`))) }),
      /does not match the NAR, whose hash is/,
    ],
    [
      'fixed:r:md5 of another NAR',
      caPath('rec-md5', tree, { method: 'recursive', hash: lieHash('md5', narBytes(dir(`${label}x`))) }),
      /does not match the NAR: the NAR hashes to md5:/,
    ],
    [
      'flat sha256 of other contents',
      caPath('flat', file(flat), { method: 'flat', hash: lieHash('sha256', lie) }),
      /does not match the NAR: its file hashes to sha256:/,
    ],
    [
      'flat sha1 of a directory',
      caPath('flat-dir', tree, { method: 'flat', hash: lieHash('sha1', flat) }),
      /needs a single regular file, but the NAR is not a single regular file/,
    ],
    [
      'text of other contents',
      caPath('text', file(flat), { method: 'text', hash: lieHash('sha256', lie) }),
      /does not match the NAR: its file hashes to sha256:/,
    ],
    [
      // The probe of issue 18: an input-addressed path with a made-up CA.
      'fixed:r:sha256:000… on an input-addressed path',
      { path: input, ca: `fixed:r:sha256:${'0'.repeat(52)}` },
      /StorePath \/nix\/store\/\S+ is not the path CA fixed:r:sha256:0+ gives/,
    ],
    [
      'a flat path with references',
      {
        path: makePath({ name: 'flat-ref', tree: file(flat), references: [input.basename] }),
        ca: formatContentAddress({ method: 'flat', hash: lieHash('sha256', flat) }),
      },
      /cannot have references/,
    ],
  ];
}

function nativeBody(p: CaPath): Buffer {
  const meta = {
    storePath: p.path.storePath,
    narHash: p.path.info().narHash,
    narSize: p.path.nar.length,
    references: p.path.references.map((r) => `/nix/store/${r}`),
    ca: p.ca,
  };
  return Buffer.concat([Buffer.from(`${JSON.stringify(meta)}\n`), p.path.nar]);
}

const putNative = (h: TestApp, p: CaPath) =>
  h.request('PUT', `/api/v1/caches/main/paths/${p.path.hashPart}`, {
    body: nativeBody(p),
    headers: { ...bearer(h.tokens.write), 'content-type': 'application/x-narhub-path' },
  });

function assertMismatch(res: LightMyRequestResponse, reason: RegExp, what: string): void {
  assert.equal(res.statusCode, 400, `${what}: ${res.statusCode} ${res.body}`);
  assert.equal(res.headers['x-narhub-error'], 'CONTENT_ADDRESS_MISMATCH', `${what}: ${res.body}`);
  const message = res.headers['content-type']?.toString().startsWith('application/json')
    ? (JSON.parse(res.body) as { message: string }).message
    : res.body.replace(/^CONTENT_ADDRESS_MISMATCH: /, '');
  assert.ok(!message.trimEnd().includes('\n'), `one line: ${res.body}`);
  assert.match(message, reason, what);
}

test('narinfo PUT: a CA contradicting the NAR or store path is 400 with the reason, nothing visible', async (t) => {
  const h = await buildTestApp(t);
  const w = basic(h.tokens.write);
  for (const [what, p, reason] of contradicting('nix')) {
    for (const ref of p.path.references) await uploadRef(h, ref);
    assert.equal((await putNar(h, p.path, w)).statusCode, 204, what);
    assertMismatch(await putNarinfo(h, p.path.hashPart, p.path.narinfo({ ca: p.ca }), w), reason, what);
    assert.equal((await visibility(h, p.path)).narinfo, 404, `${what}: nothing visible`);
    assert.equal((await visibility(h, p.path)).narHead, 404, `${what}: NAR not valid`);
  }
});

test('native upload: a CA contradicting the NAR or store path is 400 with the reason, nothing visible', async (t) => {
  const h = await buildTestApp(t);
  for (const [what, p, reason] of contradicting('native')) {
    for (const ref of p.path.references) await uploadRef(h, ref);
    assertMismatch(await putNative(h, p), reason, what);
    assert.equal((await visibility(h, p.path)).narinfo, 404, `${what}: nothing visible`);
  }
});

/** A stand-in for a reference: an input-addressed path uploaded under `basename`. */
async function uploadRef(h: TestApp, basename: string): Promise<void> {
  const ref = makePath({ name: basename.slice(33), hashPart: basename.slice(0, 32), tree: file(basename) });
  await putNar(h, ref, basic(h.tokens.write));
  const res = await putNarinfo(h, ref.hashPart, ref.narinfo(), basic(h.tokens.write));
  assert.ok(res.statusCode < 300 || res.statusCode === 409, res.body);
}

for (const big of [false, true]) {
  const size = big ? 'streamed NARs' : 'small NARs';
  test(`honest CA paths of every kind commit on both routes, CA kept (${size})`, async (t) => {
    const h = await buildTestApp(t);
    const w = basic(h.tokens.write);
    for (const p of honest(`nix-${big}`, big)) {
      assert.equal((await putNar(h, p.path, w)).statusCode, 204, p.path.name);
      const res = await putNarinfo(h, p.path.hashPart, p.path.narinfo({ ca: p.ca }), w);
      assert.equal(res.statusCode, 204, `${p.path.name} ${p.ca}: ${res.body}`);
      const served = await h.request('GET', `/main/${p.path.hashPart}.narinfo`);
      assert.match(served.body, new RegExp(`\nCA: ${p.ca}\n$`), p.path.name);
    }
    for (const p of honest(`native-${big}`, big)) {
      const res = await putNative(h, p);
      assert.equal(res.statusCode, 201, `${p.path.name} ${p.ca}: ${res.body}`);
      const served = await h.request('GET', `/main/${p.path.hashPart}.narinfo`);
      assert.match(served.body, new RegExp(`\nCA: ${p.ca}\n$`), p.path.name);
    }
  });
}

test('a text path commits with its reference; claiming none is another store path, refused', async (t) => {
  const h = await buildTestApp(t);
  const w = basic(h.tokens.write);
  const ref = makePath({ name: 'dep' });
  await putNar(h, ref, w);
  assert.equal((await putNarinfo(h, ref.hashPart, ref.narinfo(), w)).statusCode, 204);
  const text = `uses ${ref.storePath}\n`;
  const ca: ContentAddress = { method: 'text', hash: { algo: 'sha256', digest: digest('sha256', Buffer.from(text)) } };
  const p = caPath('script', file(text), ca, { references: [ref.basename] });
  await putNar(h, p.path, w);
  // Claiming no reference: the store path is not the one CA and (no) references give.
  assertMismatch(
    await putNarinfo(h, p.path.hashPart, p.path.narinfo({ ca: p.ca, references: [] }), w),
    /is not the path CA text:sha256:\S+ gives/,
    'reference left out',
  );
  assert.equal((await putNarinfo(h, p.path.hashPart, p.path.narinfo({ ca: p.ca }), w)).statusCode, 204);
});
