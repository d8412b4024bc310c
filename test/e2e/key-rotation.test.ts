// Key rotation with the real Nix client: during the overlap a client trusting either key
// substitutes every path; after re-signing, one trusting only the new key does too, including
// paths uploaded before the rotation; after retiring the old key, its signatures are gone.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { createNixEnv, generateKey } from '../helpers/nix.js';
import { runCli, runCliOk, startServer } from '../helpers/server.js';
import { lines, uploadClosure } from '../helpers/scenario.js';

interface KeyJson {
  name: string;
  publicKey: string;
  state: string;
  rewrite: { done: number; total: number; complete: boolean } | null;
}

async function keys(dataDir: string): Promise<KeyJson[]> {
  return (JSON.parse((await runCliOk(['cache', 'info', 'main', '--json'], { dataDir })).stdout) as { keys: KeyJson[] })
    .keys;
}

async function untilRewritten(dataDir: string, name: string): Promise<KeyJson> {
  for (let i = 0; i < 300; i++) {
    const k = (await keys(dataDir)).find((x) => x.name === name)!;
    if (k.rewrite?.complete) return k;
    await sleep(100);
  }
  throw new Error(`rewrite for ${name} never completed: ${JSON.stringify(await keys(dataDir))}`);
}

/** Substitutes `paths` into a fresh chroot store trusting only `trusted`; the exit code and stderr. */
async function substitute(t: Parameters<typeof createNixEnv>[0], cacheUrl: string, trusted: string, paths: string[]) {
  const client = await createNixEnv(t, { trustedPublicKeys: [trusted] });
  const store = client.freshPath('client-store');
  const res = await client.tryRun('nix', ['copy', '--from', cacheUrl, '--to', store, ...paths]);
  if (res.code === 0) {
    const got = await client.run('nix', ['path-info', '--store', store, ...paths]);
    assert.deepEqual(lines(got.stdout), [...paths].sort());
  }
  return res;
}

test('rotate, re-sign, retire: Nix substitutes with either key during the overlap, the new one after', async (t) => {
  const first = await uploadClosure(t, 'rotate-before');
  const { dataDir } = first.server;
  const key1 = first.server.publicKey;
  await first.server.stop();

  // Rotated while no server runs: nothing re-signs yet, so retiring main-1 is refused.
  const rotated = JSON.parse((await runCliOk(['key', 'rotate', 'main', '--json'], { dataDir })).stdout) as KeyJson;
  assert.equal(rotated.name, 'main-2');
  assert.equal(rotated.state, 'active');
  assert.deepEqual(rotated.rewrite, { done: 0, total: 3, complete: false });
  const refused = await runCli(['key', 'retire', 'main', 'main-1'], { dataDir });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /re-signing with main-2 is not complete \(0 of 3 paths\)/);
  const key2 = rotated.publicKey;

  // The server re-signs in the background; meanwhile a new closure is signed by both keys.
  const server = await startServer(t, { dataDir });
  const second = await uploadClosure(t, 'rotate-during', { server });
  const k2 = await untilRewritten(dataDir, 'main-2');
  assert.deepEqual(k2.rewrite, { done: 3, total: 3, complete: true });
  const info = JSON.parse((await runCliOk(['cache', 'info', 'main', '--json'], { dataDir })).stdout) as {
    publicKeys: string[];
    keys: KeyJson[];
  };
  assert.deepEqual(info.publicKeys, [key1, key2], 'oldest first');
  assert.deepEqual(
    info.keys.map((k) => [k.name, k.state]),
    [
      ['main-1', 'previous'],
      ['main-2', 'active'],
    ],
  );

  const all = [...first.closure.paths, ...second.closure.paths];
  const cacheUrl = `${server.url}/main`;
  for (const trusted of [key1, key2]) {
    const res = await substitute(t, cacheUrl, trusted, all);
    assert.equal(res.code, 0, `trusting only ${trusted.split(':')[0]}:\n${res.stderr}`);
  }

  // Retiring main-1 removes its signatures from every narinfo.
  const retired = JSON.parse(
    (await runCliOk(['key', 'retire', 'main', 'main-1', '--json'], { dataDir })).stdout,
  ) as KeyJson;
  assert.equal(retired.state, 'retired');
  await untilRewritten(dataDir, 'main-1');
  const narinfo = await (await fetch(`${cacheUrl}/${first.closure.paths[0]!.slice(11, 43)}.narinfo`)).text();
  assert.doesNotMatch(narinfo, /Sig: main-1:/);
  assert.match(narinfo, /Sig: main-2:/);
  const onlyOld = await substitute(t, cacheUrl, key1, all);
  assert.notEqual(onlyOld.code, 0, 'a client trusting only the retired key substitutes nothing');
  assert.match(onlyOld.stderr, /lacks a valid signature|not signed by any of the keys/);
  const onlyNew = await substitute(t, cacheUrl, key2, all);
  assert.equal(onlyNew.code, 0, onlyNew.stderr);
});

test('key import adopts a key clients already trust; every path is re-signed with it', async (t) => {
  const { server, closure, uploader } = await uploadClosure(t, 'import');
  const { dataDir } = server;
  const trusted = await generateKey(uploader, 'cache.example.org-1');
  const imported = JSON.parse(
    (await runCliOk(['key', 'import', 'main', '--secret-key-file', trusted.secretKeyFile, '--json'], { dataDir }))
      .stdout,
  ) as KeyJson;
  assert.equal(imported.name, 'cache.example.org-1');
  assert.equal(imported.state, 'active');
  assert.equal(imported.publicKey, trusted.publicKey);
  await untilRewritten(dataDir, 'cache.example.org-1');
  const res = await substitute(t, `${server.url}/main`, trusted.publicKey, closure.paths);
  assert.equal(res.code, 0, res.stderr);
});
