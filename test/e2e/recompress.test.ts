// Background recompression: xz NARs uploaded by stock Nix into a cache with recompressToZstd
// are rewritten as zstd, the narinfo switches over, old and new clients both keep working.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { getNarinfo, verifyNarinfoSig, type FetchedNarinfo } from '../helpers/http.js';
import { buildClosure, createNixEnv } from '../helpers/nix.js';
import { createToken, startServer } from '../helpers/server.js';
import { makeTempDir, type Cleanup } from '../helpers/tmp.js';

/**
 * A config declaring `main` with the setting. (A first start with declared caches creates no
 * admin token, so tests start once without a config, then restart with one.)
 */
async function configFile(t: Cleanup, recompressToZstd: boolean): Promise<string> {
  const dir = await makeTempDir(t, 'narhub-config-');
  const file = join(dir, 'config.json');
  await writeFile(file, JSON.stringify({ caches: [{ name: 'main', recompressToZstd }] }));
  return file;
}

/** Polls until every path's narinfo says `Compression: zstd`. */
async function waitForZstd(cacheUrl: string, paths: string[], timeoutMs = 60_000): Promise<FetchedNarinfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = await Promise.all(paths.map((p) => getNarinfo(cacheUrl, p)));
    if (all.every((n) => n.narinfo?.get('Compression') === 'zstd')) return all;
    if (Date.now() > deadline)
      throw new Error(`not recompressed within ${timeoutMs} ms:\n${all.map((n) => n.body).join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('xz NARs from nix copy are recompressed to zstd in the background; old and new URLs both serve', async (t) => {
  const boot = await startServer(t);
  assert.equal(await boot.stop(), 0);
  const server = await startServer(t, { dataDir: boot.dataDir, args: ['--config', await configFile(t, true)] });
  const cacheUrl = `${server.url}/main`;
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  const closure = await buildClosure(nix, 'recompress');

  await nix.run('nix', ['copy', '--to', `${cacheUrl}?compression=xz`, closure.top]);
  const after = await waitForZstd(cacheUrl, closure.paths);

  for (const got of after) {
    const ni = got.narinfo!;
    assert.match(ni.get('URL') ?? '', /^nar\/[0-9a-z]{52}\.nar\.zst$/, got.body);
    assert.ok(verifyNarinfoSig(ni, server.publicKey), `the signature still verifies:\n${got.body}`);
    const file = Buffer.from(await (await fetch(`${cacheUrl}/${ni.get('URL')}`)).arrayBuffer());
    assert.equal(file.length, Number(ni.get('FileSize')));
    assert.ok(file.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd magic');
  }
  // The server logged the work.
  assert.match(server.stdout(), /NAR recompressed to zstd/);
  // The old xz files stay served for clients holding the old narinfo.
  const xzNames = [...server.stdout().matchAll(/"from":"([0-9a-z]{52}\.nar\.xz)"/g)].map((m) => m[1]!);
  assert.equal(new Set(xzNames).size, closure.paths.length, server.stdout());
  for (const name of xzNames) {
    const old = await fetch(`${cacheUrl}/nar/${name}`);
    assert.equal(old.status, 200, `nar/${name} is still served`);
    assert.ok(
      Buffer.from(await old.arrayBuffer())
        .subarray(0, 6)
        .equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])),
    );
  }

  // A fresh client trusting only the cache key substitutes from the recompressed files.
  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', cacheUrl, '--to', store, closure.top]);
  assert.equal(readFileSync(join(store, closure.top, 'data'), 'utf8'), `top-${closure.nonce}\n`);
  for (const p of closure.paths) await client.run('nix-store', ['--store', store, '--verify-path', p]);
});

test('xz NARs already in a cache are found and recompressed when recompressToZstd is switched on', async (t) => {
  const first = await startServer(t);
  const { token } = await createToken(first.dataDir, 'main', 'write');
  const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  const closure = await buildClosure(nix, 'recompress-restart');
  await nix.run('nix', ['copy', '--to', `${first.url}/main?compression=xz`, closure.top]);
  // No recompression while the cache does not ask for it.
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (const p of closure.paths)
    assert.equal((await getNarinfo(`${first.url}/main`, p)).narinfo?.get('Compression'), 'xz');
  assert.equal(await first.stop(), 0);

  const second = await startServer(t, { dataDir: first.dataDir, args: ['--config', await configFile(t, true)] });
  await waitForZstd(`${second.url}/main`, closure.paths);

  const client = await createNixEnv(t, { trustedPublicKeys: [second.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix-store', [
    '--store',
    store,
    '-r',
    closure.top,
    '--option',
    'substituters',
    `${second.url}/main`,
  ]);
  assert.equal(readFileSync(join(store, closure.top, 'data'), 'utf8'), `top-${closure.nonce}\n`);
});
