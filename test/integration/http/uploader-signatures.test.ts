// Signatures under other key names than the cache's own (a CI's `?secret-key=`): uploader keys the
// cache lists are verified, other names are kept or refused as the cache says, and a path carries at
// most `maxUploaderSignatures` of them, whether they come with its first PUT or later ones.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { formatPublicKey, generateKeyPair, signNarInfo } from '../../../src/nix/signing.js';
import {
  basic,
  bearer,
  buildTestApp,
  makePath,
  putNar,
  putNarinfo,
  upload,
  type TestApp,
  type TestPath,
} from '../../helpers/build-app.js';

const ci = generateKeyPair('ci.example.org-1');
const CI_PUBLIC = formatPublicKey(ci.public);

function assertRefused(res: LightMyRequestResponse, code: string, reason: RegExp): void {
  assert.equal(res.statusCode, 400, `${code}: ${res.statusCode} ${res.body}`);
  assert.equal(res.headers['x-narhub-error'], code, res.body);
  const message = res.headers['content-type']?.toString().startsWith('application/json')
    ? (JSON.parse(res.body) as { message: string }).message
    : res.body.replace(new RegExp(`^${code}: `), '').replace(/\n$/, '');
  assert.ok(!message.includes('\n'), `one line: ${res.body}`);
  assert.match(message, reason);
}

const narinfoOf = async (h: TestApp, p: TestPath) => h.request('GET', `/main/${p.hashPart}.narinfo`);

function putNative(h: TestApp, p: TestPath, sigs: string[]) {
  const meta = { storePath: p.storePath, narHash: p.info().narHash, narSize: p.nar.length, references: [], sigs };
  return h.request('PUT', `/api/v1/caches/main/paths/${p.hashPart}`, {
    body: Buffer.concat([Buffer.from(`${JSON.stringify(meta)}\n`), p.nar]),
    headers: { ...bearer(h.tokens.write), 'content-type': 'application/x-narhub-path' },
  });
}

/** A signature of `p` by a key that only shares the name `name`. */
const forgedAs = (name: string, p: TestPath) => signNarInfo(generateKeyPair(name).secret, p.info());

test('uploader key: its valid signature is kept and served; a forged one is 400 on both routes', async (t) => {
  const h = await buildTestApp(t);
  await h.service.registry.update('main', { uploaderKeys: [CI_PUBLIC] });
  const w = basic(h.tokens.write);

  const good = makePath();
  const sig = signNarInfo(ci.secret, good.info());
  await upload(h, good, { narinfo: good.narinfo({ sigs: [sig] }) });
  assert.ok(parseNarInfo((await narinfoOf(h, good)).body).sigs.includes(sig), 'the CI signature is served');

  // Nix protocol: a key sharing the name, and a real CI signature of another path.
  const bad = makePath();
  await putNar(h, bad, w);
  for (const [what, forged] of [
    ['another key under the name', forgedAs(ci.public.name, bad)],
    ['a signature of another path', sig],
  ] as const) {
    const res = await putNarinfo(h, bad.hashPart, bad.narinfo({ sigs: [forged] }), w);
    assertRefused(res, 'SIGNATURE_INVALID', /uploader key ci\.example\.org-1 does not verify for this path/);
    assert.equal((await narinfoOf(h, bad)).statusCode, 404, `${what}: nothing visible`);
  }
  // Added by a later PUT to a committed path.
  const readd = await putNarinfo(h, good.hashPart, good.narinfo({ sigs: [sig, forgedAs(ci.public.name, good)] }), w);
  assertRefused(readd, 'SIGNATURE_INVALID', /does not verify/);
  assert.deepEqual(parseNarInfo((await narinfoOf(h, good)).body).sigs.length, 2, 'nothing added');

  // Native upload.
  const native = makePath();
  assertRefused(await putNative(h, native, [forgedAs(ci.public.name, native)]), 'SIGNATURE_INVALID', /does not verify/);
  assert.equal((await narinfoOf(h, native)).statusCode, 404);
  assert.equal((await putNative(h, native, [signNarInfo(ci.secret, native.info())])).statusCode, 201);
});

test('unknown key names: kept by default, 400 once the cache refuses them; what a path has stays', async (t) => {
  const h = await buildTestApp(t);
  const w = basic(h.tokens.write);
  const stranger = (p: TestPath) => signNarInfo(generateKeyPair('stranger-1').secret, p.info());

  const early = makePath();
  const earlySig = stranger(early);
  await upload(h, early, { narinfo: early.narinfo({ sigs: [earlySig] }) });
  const served = (await narinfoOf(h, early)).body;
  assert.ok(parseNarInfo(served).sigs.includes(earlySig), 'kept while the cache keeps unknown names');

  await h.service.registry.update('main', { refuseUnknownSignatures: true, uploaderKeys: [CI_PUBLIC] });
  const late = makePath();
  await putNar(h, late, w);
  assertRefused(
    await putNarinfo(h, late.hashPart, late.narinfo({ sigs: [stranger(late)] }), w),
    'SIGNATURE_REFUSED',
    /stranger-1 is not a key of cache main nor one of its uploader keys, and it refuses others/,
  );
  assert.equal((await narinfoOf(h, late)).statusCode, 404);
  assertRefused(await putNative(h, makePath(), [stranger(late)]), 'SIGNATURE_REFUSED', /refuses others/);
  // The cache's own and the uploader keys' signatures still go through.
  const own = await putNarinfo(h, late.hashPart, late.narinfo({ sigs: [signNarInfo(ci.secret, late.info())] }), w);
  assert.equal(own.statusCode, 204, own.body);

  // `nix store sign` sends back what it read: the signature accepted earlier stays; a new stranger's does not go in.
  assert.equal((await putNarinfo(h, early.hashPart, served, w)).statusCode, 204);
  const more = parseNarInfo(served);
  more.sigs.push(stranger(early));
  assertRefused(await putNarinfo(h, early.hashPart, early.narinfo({ sigs: more.sigs }), w), 'SIGNATURE_REFUSED', /./);
  assert.equal((await narinfoOf(h, early)).body, served);
});

test('the cap: maxUploaderSignatures a path, first PUT or later; no key name over 128 characters', async (t) => {
  const h = await buildTestApp(t);
  await h.service.registry.update('main', { maxUploaderSignatures: 2 });
  const w = basic(h.tokens.write);
  const p = makePath();
  const sigs = ['a-1', 'b-1', 'c-1'].map((name) => signNarInfo(generateKeyPair(name).secret, p.info()));
  await putNar(h, p, w);
  assertRefused(
    await putNarinfo(h, p.hashPart, p.narinfo({ sigs }), w),
    'SIGNATURE_REFUSED',
    /3 signatures under names other than the cache's; cache main keeps at most 2 per path/,
  );
  assert.equal((await putNarinfo(h, p.hashPart, p.narinfo({ sigs: sigs.slice(0, 2) }), w)).statusCode, 204);
  const before = (await narinfoOf(h, p)).body;
  // One more by a later PUT, alone: still three in all.
  assertRefused(await putNarinfo(h, p.hashPart, p.narinfo({ sigs: [sigs[2]!] }), w), 'SIGNATURE_REFUSED', /at most 2/);
  assert.equal((await narinfoOf(h, p)).body, before);
  assert.equal(parseNarInfo(before).sigs.length, 3, 'two uploader signatures and the cache’s own');

  const long = makePath();
  await putNar(h, long, w);
  const longSig = signNarInfo(generateKeyPair('k'.repeat(129)).secret, long.info());
  assertRefused(
    await putNarinfo(h, long.hashPart, long.narinfo({ sigs: [longSig] }), w),
    'SIGNATURE_REFUSED',
    /longer than 128 characters/,
  );
});

test('settings over the admin API: uploader keys must be public keys not named like the cache’s own', async (t) => {
  const h = await buildTestApp(t);
  const admin = h.token('*', 'admin').token;
  const patch = (body: unknown) =>
    h.app.inject({
      method: 'PATCH',
      url: '/api/v1/caches/main',
      headers: { ...bearer(admin), 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
  const ok = await patch({ uploaderKeys: [CI_PUBLIC], refuseUnknownSignatures: true, maxUploaderSignatures: 3 });
  assert.equal(ok.statusCode, 200, ok.body);
  const info = JSON.parse(ok.body) as Record<string, unknown>;
  assert.deepEqual(
    [info.uploaderKeys, info.refuseUnknownSignatures, info.maxUploaderSignatures],
    [[CI_PUBLIC], true, 3],
  );
  const secretAsPublic = `ci-1:${Buffer.from(ci.secret.secretKey).toString('base64')}`;
  for (const [body, code] of [
    [{ uploaderKeys: ['not a key'] }, 'KEY_INVALID'],
    [{ uploaderKeys: [secretAsPublic] }, 'KEY_INVALID'],
    [{ uploaderKeys: [formatPublicKey({ ...ci.public, name: 'main-1' })] }, 'KEY_INVALID'],
    [{ maxUploaderSignatures: 65 }, 'BAD_REQUEST'],
    [{ refuseUnknownSignatures: 'yes' }, 'BAD_REQUEST'],
  ] as const) {
    const res = await patch(body);
    assert.equal(res.statusCode, 400, `${JSON.stringify(body)}: ${res.body}`);
    assert.equal((JSON.parse(res.body) as { code: string }).code, code, res.body);
  }
});

test('declared in the config: a start applies the signature settings; left out, they stay as set', async (t) => {
  const h = await buildTestApp(t);
  const { registry } = h.service;
  const decl = { private: false, priority: 40 };
  await registry.ensure('main', {
    ...decl,
    uploaderKeys: [CI_PUBLIC],
    refuseUnknownSignatures: true,
    maxUploaderSignatures: 2,
  });
  const declared = registry.info('main');
  assert.deepEqual(
    [declared.uploaderKeys, declared.refuseUnknownSignatures, declared.maxUploaderSignatures],
    [[CI_PUBLIC], true, 2],
  );
  await registry.ensure('main', decl);
  const kept = registry.info('main');
  assert.deepEqual(
    [kept.uploaderKeys, kept.refuseUnknownSignatures, kept.maxUploaderSignatures],
    [[CI_PUBLIC], true, 2],
  );
  const p = makePath();
  await putNar(h, p, basic(h.tokens.write));
  const stranger = signNarInfo(generateKeyPair('stranger-1').secret, p.info());
  const res = await putNarinfo(h, p.hashPart, p.narinfo({ sigs: [stranger] }), basic(h.tokens.write));
  assertRefused(res, 'SIGNATURE_REFUSED', /refuses others/);
});
