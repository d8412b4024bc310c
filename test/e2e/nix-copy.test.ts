// `nix copy --to http://…/main?compression=…` with the real Nix 2.8 client.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { getNarinfo, verifyNarinfoSig } from '../helpers/http.js';
import { buildBigPath, buildClosure, createNixEnv, generateKey } from '../helpers/nix.js';
import { lines, uploadClosure, type Compression } from '../helpers/scenario.js';
import { cacheInfo, createToken, runCliOk, startServer } from '../helpers/server.js';

const NAR_MAGIC = Buffer.concat([Buffer.from([13, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('nix-archive-1')]);

const expectations: Record<Compression, { ext: string; magic: Buffer }> = {
  none: { ext: '.nar', magic: NAR_MAGIC },
  zstd: { ext: '.nar.zst', magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]) },
  xz: { ext: '.nar.xz', magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) },
};

interface LocalInfo {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  deriver?: string;
}

for (const compression of ['none', 'zstd', 'xz'] as const) {
  test(`nix copy --to uploads a whole closure with compression=${compression}`, async (t) => {
    const server = await startServer(t);
    const cacheUrl = `${server.url}/main`;
    const { token } = await createToken(server.dataDir, 'main', 'write');
    const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
    const closure = await buildClosure(nix, `copy-${compression}`);

    for (const p of closure.paths) {
      assert.equal((await getNarinfo(cacheUrl, p)).status, 404, `${p} must not be in a fresh cache`);
    }

    await nix.run('nix', ['copy', '--to', `${cacheUrl}?compression=${compression}`, closure.top]);

    const local = JSON.parse((await nix.run('nix', ['path-info', '--json', '-r', closure.top])).stdout) as LocalInfo[];
    const { ext, magic } = expectations[compression];
    for (const p of closure.paths) {
      const got = await getNarinfo(cacheUrl, p);
      assert.equal(got.status, 200, `narinfo of ${p}: ${got.body}`);
      assert.match(got.headers.get('content-type') ?? '', /^text\/x-nix-narinfo/);
      const ni = got.narinfo!;
      assert.equal(ni.get('StorePath'), p);
      assert.equal(ni.get('Compression'), compression, got.body);
      const sigs = ni.all('Sig');
      assert.ok(
        sigs.some((s) => s.startsWith('main-1:')),
        `no main-1 Sig in\n${got.body}`,
      );
      assert.ok(verifyNarinfoSig(ni, server.publicKey), `main-1 Sig does not verify for\n${got.body}`);

      const mine = local.find((l) => l.path === p);
      assert.ok(mine, `${p} missing from local path-info`);
      assert.equal(Number(ni.get('NarSize')), mine.narSize);
      assert.deepEqual(
        lines((ni.get('References') ?? '').split(' ').join('\n')),
        lines(mine.references.map((r) => r.slice('/nix/store/'.length)).join('\n')),
      );

      // The NAR the narinfo points at is served, compressed as advertised.
      const narUrl = ni.get('URL');
      assert.ok(narUrl?.startsWith('nar/') && narUrl.endsWith(ext), `URL ${narUrl} should end in ${ext}`);
      const nar = await fetch(`${cacheUrl}/${narUrl}`);
      assert.equal(nar.status, 200, `GET ${narUrl}`);
      const body = Buffer.from(await nar.arrayBuffer());
      assert.ok(body.subarray(0, magic.length).equals(magic), `${narUrl} does not start with the ${compression} magic`);
      if (ni.get('FileSize') !== undefined) assert.equal(body.length, Number(ni.get('FileSize')));
      if (compression === 'none') assert.equal(body.length, mine.narSize);
    }

    // A fresh client with no credentials (public cache) sees the whole closure.
    const reader = await createNixEnv(t);
    const listed = await reader.run('nix', ['path-info', '--store', cacheUrl, '-r', closure.top]);
    assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
  });
}

test('re-running nix copy --to after a complete upload changes nothing', async (t) => {
  const { cacheUrl, closure, uploader } = await uploadClosure(t, 'copy-again');
  const before = await Promise.all(closure.paths.map((p) => getNarinfo(cacheUrl, p)));
  await uploader.run('nix', ['copy', '--to', `${cacheUrl}?compression=zstd`, closure.top]);
  const after = await Promise.all(closure.paths.map((p) => getNarinfo(cacheUrl, p)));
  assert.deepEqual(
    after.map((a) => [a.status, a.body]),
    before.map((b) => [b.status, b.body]),
  );
});

test('uploader signatures (nix copy ?secret-key=) are kept next to the cache signature', async (t) => {
  const server = await startServer(t);
  const cacheUrl = `${server.url}/main`;
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  const closure = await buildClosure(nix, 'copy-uploader-sig');
  const uploaderKey = await generateKey(nix, 'uploader-1');

  await nix.run('nix', [
    'copy',
    '--to',
    `${cacheUrl}?compression=zstd&secret-key=${uploaderKey.secretKeyFile}`,
    closure.top,
  ]);

  for (const p of closure.paths) {
    const got = await getNarinfo(cacheUrl, p);
    assert.equal(got.status, 200);
    const ni = got.narinfo!;
    assert.deepEqual(
      ni
        .all('Sig')
        .map((s) => s.split(':')[0])
        .sort(),
      ['main-1', 'uploader-1'],
      got.body,
    );
    assert.ok(verifyNarinfoSig(ni, server.publicKey), `main-1 Sig invalid:\n${got.body}`);
    assert.ok(verifyNarinfoSig(ni, uploaderKey.publicKey), `uploader-1 Sig invalid:\n${got.body}`);
  }

  // A client that trusts only the uploader's key can substitute too.
  const client = await createNixEnv(t, { trustedPublicKeys: [uploaderKey.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', cacheUrl, '--to', store, closure.top]);
  assert.equal(readFileSync(join(store, closure.top, 'data'), 'utf8'), `top-${closure.nonce}\n`);
});

test("a forged signature under the cache's own key name is refused and nothing is committed", async (t) => {
  const server = await startServer(t);
  const cacheUrl = `${server.url}/main`;
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  const closure = await buildClosure(nix, 'copy-forged-sig');
  // A key that claims to be the cache's key, but is not.
  const forged = await generateKey(nix, 'main-1');
  assert.notEqual(forged.publicKey, server.publicKey);

  const res = await nix.tryRun('nix', [
    'copy',
    '--to',
    `${cacheUrl}?compression=zstd&secret-key=${forged.secretKeyFile}`,
    closure.top,
  ]);
  assert.notEqual(res.code, 0, `an upload with a forged main-1 signature must fail:\n${res.stderr}`);
  assert.match(res.stderr, /HTTP error 400[\s\S]*signature/i, 'refused because of the signature');
  for (const p of closure.paths) {
    const got = await getNarinfo(cacheUrl, p);
    assert.equal(got.status, 404, `${p} must not be committed with a forged signature: ${got.body}`);
  }
});

test('multi-megabyte NARs round-trip through upload and substitution', async (t) => {
  const server = await startServer(t);
  const nix = await createNixEnv(t);
  const big = await buildBigPath(nix, 'copy-big', 24 * 1024 * 1024);
  const digest = createHash('sha256')
    .update(readFileSync(join(big, 'blob')))
    .digest('hex');

  for (const compression of ['none', 'zstd'] as const) {
    // One cache per compression, so both uploads really send the NAR.
    const cache = `big-${compression}`;
    await runCliOk(['cache', 'create', cache], { dataDir: server.dataDir });
    const { token: cacheToken } = await createToken(server.dataDir, cache, 'write');
    const key = (await cacheInfo(server.dataDir, cache)).publicKeys[0]!;
    const up = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: cacheToken }] });
    await up.run('nix', ['copy', '--to', `${server.url}/${cache}?compression=${compression}`, big]);

    const got = await getNarinfo(`${server.url}/${cache}`, big);
    assert.equal(got.status, 200);
    assert.equal(got.narinfo!.get('Compression'), compression);
    assert.ok(Number(got.narinfo!.get('NarSize')) > 24 * 1024 * 1024);

    const client = await createNixEnv(t, { trustedPublicKeys: [key] });
    const store = client.freshPath('client-store');
    await client.run('nix', ['copy', '--from', `${server.url}/${cache}`, '--to', store, big]);
    await client.run('nix-store', ['--store', store, '--verify-path', big]);
    const copied = createHash('sha256')
      .update(readFileSync(join(store, big, 'blob')))
      .digest('hex');
    assert.equal(copied, digest, `blob substituted from ${cache} differs`);
  }
});
