// Concurrent narinfo PUTs for one path (parallel signers, racing uploaders).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { buildApp } from '../../../src/http/app.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { generateKeyPair, signNarInfo } from '../../../src/nix/signing.js';
import { basic, buildTestApp, makePath, putNar, putNarinfo, upload, type TestApp } from '../../helpers/build-app.js';

const storedNarinfo = (h: TestApp, hashPart: string) =>
  readFileSync(join(h.storeRoot, 'main', `${hashPart}.narinfo`), 'utf8');

test('concurrent re-PUTs adding different signatures keep every one of them', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'zstd' });
  await upload(h, path);
  const sigs = ['signer-a', 'signer-b', 'signer-c', 'signer-d'].map((name) =>
    signNarInfo(generateKeyPair(name).secret, path.info()),
  );
  const results = await Promise.all(
    sigs.map((sig) => putNarinfo(h, path.hashPart, path.narinfo({ sigs: [sig] }), basic(h.tokens.write))),
  );
  assert.deepEqual(
    results.map((r) => r.statusCode),
    [204, 204, 204, 204],
    results.map((r) => r.body).join(''),
  );

  const served = (await h.request('GET', `/main/${path.hashPart}.narinfo`)).body;
  const info = parseNarInfo(served);
  for (const sig of sigs)
    assert.ok(info.sigs.includes(sig), `every acknowledged signature is served: ${sig.slice(0, 10)}`);
  assert.equal(info.sigs.length, sigs.length + 1);
  assert.equal(storedNarinfo(h, path.hashPart), served, 'the blob store holds what is served');
});

test('racing uploads of one path with different content: one wins, the other is 409, the store agrees', async (t) => {
  const h = await buildTestApp(t);
  const a = makePath({ name: 'app', compression: 'xz' });
  const b = makePath({ name: 'app', hashPart: a.hashPart, compression: 'xz' });
  await putNar(h, a, basic(h.tokens.write));
  await putNar(h, b, basic(h.tokens.write));
  const [ra, rb] = await Promise.all([
    putNarinfo(h, a.hashPart, a.narinfo(), basic(h.tokens.write)),
    putNarinfo(h, b.hashPart, b.narinfo(), basic(h.tokens.write)),
  ]);
  assert.deepEqual([ra.statusCode, rb.statusCode].sort(), [204, 409], `${ra.body}${rb.body}`);
  const winner = ra.statusCode === 204 ? a : b;
  const loser = winner === a ? b : a;
  const served = (await h.request('GET', `/main/${a.hashPart}.narinfo`)).body;
  assert.equal(parseNarInfo(served).url, `nar/${winner.fileName}`);
  assert.equal(storedNarinfo(h, a.hashPart), served, 'the loser must not leave its narinfo in the blob store');
  assert.equal((await h.request('HEAD', `/main/nar/${loser.fileName}`)).statusCode, 404);
});

test('the same race between two server instances sharing one database and store', async (t) => {
  const h = await buildTestApp(t);
  // A second process over the same data directory.
  const service2 = createCacheService({ db: h.db, store: h.store, keysDir: join(h.dataDir, 'keys') });
  const app2 = await buildApp({ service: service2, maxNarSize: 1 << 26, maxSmallFileSize: 1 << 20 });
  t.after(() => app2.close());

  for (let round = 0; round < 5; round++) {
    const a = makePath({ name: 'app', compression: 'zstd' });
    const b = makePath({ name: 'app', hashPart: a.hashPart, compression: 'zstd' });
    await putNar(h, a, basic(h.tokens.write));
    await putNar(h, b, basic(h.tokens.write));
    const put = (app: typeof app2, text: string) =>
      app.inject({
        method: 'PUT',
        url: `/main/${a.hashPart}.narinfo`,
        payload: text,
        headers: { ...basic(h.tokens.write), 'content-type': 'text/x-nix-narinfo' },
      });
    const [ra, rb] =
      round % 2 === 0
        ? await Promise.all([put(h.app, a.narinfo()), put(app2, b.narinfo())])
        : await Promise.all([put(app2, a.narinfo()), put(h.app, b.narinfo())]);
    assert.deepEqual([ra.statusCode, rb.statusCode].sort(), [204, 409], `${ra.body}${rb.body}`);
    const served = (await h.request('GET', `/main/${a.hashPart}.narinfo`)).body;
    assert.equal(storedNarinfo(h, a.hashPart), served, `round ${round}: the blob store holds what is served`);
  }
});

test('identical concurrent uploads signed by different uploaders both succeed; both signatures stay', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'br' });
  await putNar(h, path, basic(h.tokens.write));
  const sigs = ['up-1', 'up-2'].map((n) => signNarInfo(generateKeyPair(n).secret, path.info()));
  const results = await Promise.all(
    sigs.map((sig) => putNarinfo(h, path.hashPart, path.narinfo({ sigs: [sig] }), basic(h.tokens.write))),
  );
  assert.deepEqual(
    results.map((r) => r.statusCode),
    [204, 204],
  );
  const info = parseNarInfo((await h.request('GET', `/main/${path.hashPart}.narinfo`)).body);
  assert.deepEqual(
    info.sigs.filter((s) => !s.startsWith('main-1:')),
    [...sigs].sort(),
  );
});
