// Signatures on narinfo re-PUT (what `nix store sign --store <cache>` does) and forged ones.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeBase64 } from '../../../src/nix/base64.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { generateKeyPair, publicKeyOf, signNarInfo, verifyNarInfoSig } from '../../../src/nix/signing.js';
import { basic, buildTestApp, makePath, putNar, putNarinfo, randomHashPart, upload } from '../../helpers/build-app.js';

const withoutSigs = (text: string) =>
  text
    .split('\n')
    .filter((l) => !l.startsWith('Sig: '))
    .join('\n');

test('re-PUT with an extra valid signature adds it, sorted, and never changes content', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'zstd' });
  await upload(h, path);
  const first = (await h.request('GET', `/main/${path.hashPart}.narinfo`)).body;
  const firstInfo = parseNarInfo(first);
  assert.equal(firstInfo.sigs.length, 1);

  // `nix store sign`: GET the narinfo, add a signature, PUT it back.
  const key = generateKeyPair('aaa-signer-1'); // sorts before main-1
  const extra = signNarInfo(key.secret, firstInfo);
  const signed = parseNarInfo(first);
  signed.sigs = [...signed.sigs, extra];
  const res = await putNarinfo(h, path.hashPart, path.narinfo({ sigs: signed.sigs }), basic(h.tokens.write));
  assert.equal(res.statusCode, 204, res.body);

  const after = (await h.request('GET', `/main/${path.hashPart}.narinfo`)).body;
  const info = parseNarInfo(after);
  assert.deepEqual(info.sigs, [extra, firstInfo.sigs[0]!], 'both Sig lines, sorted');
  assert.equal(after.split('\n').filter((l) => l.startsWith('Sig: ')).length, 2);
  assert.equal(withoutSigs(after), withoutSigs(first), 'nothing but the signatures changed');
  assert.ok(verifyNarInfoSig([publicKeyOf(key.secret)], info, extra));
  assert.ok(verifyNarInfoSig(h.publicKeys(), info, firstInfo.sigs[0]!));
  // HEAD follows the new length.
  const head = await h.request('HEAD', `/main/${path.hashPart}.narinfo`);
  assert.equal(Number(head.headers['content-length']), Buffer.byteLength(after));

  // A third signature by a re-PUT that also tries to change unsigned fields (Deriver, FileHash,
  // URL): the signature is added, the content stays.
  const key2 = generateKeyPair('zzz-signer-1');
  const extra2 = signNarInfo(key2.secret, firstInfo);
  const sneaky = path.narinfo({
    sigs: [extra2],
    deriver: `${randomHashPart()}-evil.drv`,
    fileHash: undefined,
    fileSize: undefined,
  });
  const res2 = await putNarinfo(h, path.hashPart, sneaky, basic(h.tokens.write));
  assert.equal(res2.statusCode, 204, res2.body);
  const third = (await h.request('GET', `/main/${path.hashPart}.narinfo`)).body;
  assert.deepEqual(parseNarInfo(third).sigs, [extra, firstInfo.sigs[0]!, extra2]);
  assert.equal(withoutSigs(third), withoutSigs(first));
  assert.equal(parseNarInfo(third).deriver, undefined);

  // And the NAR is untouched throughout.
  assert.ok((await h.request('GET', `/main/nar/${path.fileName}`)).rawPayload.equals(path.file));
});

test("a forged signature under the cache's own key name is refused, on first PUT and on re-PUT", async (t) => {
  const h = await buildTestApp(t);
  const path = makePath();
  await putNar(h, path, basic(h.tokens.write));

  // A key that merely shares the name main-1.
  const impostor = generateKeyPair('main-1');
  const forged = signNarInfo(impostor.secret, path.info());
  const res = await putNarinfo(h, path.hashPart, path.narinfo({ sigs: [forged] }), basic(h.tokens.write));
  assert.equal(res.statusCode, 400, res.body);
  assert.match(res.body, /^NARINFO_INVALID: [^\n]*main-1[^\n]*\n$/);
  assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).statusCode, 404);
  assert.equal((await h.request('HEAD', `/main/nar/${path.fileName}`)).statusCode, 404);

  // A real main-1 signature of another path's fingerprint.
  const other = makePath();
  await upload(h, other);
  const otherSig = parseNarInfo((await h.request('GET', `/main/${other.hashPart}.narinfo`)).body).sigs[0]!;
  const replayed = await putNarinfo(h, path.hashPart, path.narinfo({ sigs: [otherSig] }), basic(h.tokens.write));
  assert.equal(replayed.statusCode, 400, replayed.body);
  assert.match(replayed.body, /^NARINFO_INVALID: /);
  assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).statusCode, 404);

  // Once committed, a re-PUT with a forged main-1 signature is refused and changes nothing.
  await putNarinfo(h, path.hashPart, path.narinfo(), basic(h.tokens.write));
  const served = (await h.request('GET', `/main/${path.hashPart}.narinfo`)).body;
  const again = await putNarinfo(h, path.hashPart, path.narinfo({ sigs: [forged] }), basic(h.tokens.write));
  assert.equal(again.statusCode, 400, again.body);
  assert.match(again.body, /^NARINFO_INVALID: /);
  assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body, served);
});

test('malformed Sig values are refused', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath();
  await putNar(h, path, basic(h.tokens.write));
  const cases = [
    'nokeyname',
    'k:notbase64!!',
    `k:${encodeBase64(new Uint8Array(63))}`,
    `:${encodeBase64(new Uint8Array(64))}`,
  ];
  for (const sig of cases) {
    const text = path.narinfo().replace('References: \n', `References: \nSig: ${sig}\n`);
    const res = await putNarinfo(h, path.hashPart, text, basic(h.tokens.write));
    assert.equal(res.statusCode, 400, `${sig}: ${res.body}`);
    assert.match(res.body, /^(NARINFO_PARSE_ERROR|NARINFO_INVALID): [^\n]+\n$/);
  }
  assert.equal((await h.request('GET', `/main/${path.hashPart}.narinfo`)).statusCode, 404);
});

test('a signature by an unknown key is kept as the uploader sent it', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'br' });
  // cache.nixos.org-1 is not ours: narhub cannot check it and passes it on, as Nix would.
  const foreign = `cache.nixos.org-1:${encodeBase64(new Uint8Array(64).fill(9))}`;
  await upload(h, path, { narinfo: path.narinfo({ sigs: [foreign] }) });
  const info = parseNarInfo((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body);
  assert.ok(info.sigs.includes(foreign));
  assert.equal(info.sigs.length, 2);
});
