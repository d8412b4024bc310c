// A fresh client store substitutes from narhub and checks narhub's signature.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createNixEnv, generateKey } from '../helpers/nix.js';
import { lines, uploadClosure } from '../helpers/scenario.js';

test('nix copy --from narhub into a fresh store trusting only the cache key', async (t) => {
  const { server, cacheUrl, closure, uploader } = await uploadClosure(t, 'subst-copy');
  const [leaf, mid, top] = closure.paths as [string, string, string];

  // Trusting only narhub's key: the copy verifies main-1 signatures and succeeds.
  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', cacheUrl, '--to', store, top]);

  const listed = await client.run('nix', ['path-info', '--store', store, '-r', top]);
  assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
  for (const p of closure.paths) {
    await client.run('nix-store', ['--store', store, '--verify-path', p]);
  }
  // The contents really arrived in the chroot store.
  assert.equal(readFileSync(join(store, top, 'data'), 'utf8'), `top-${closure.nonce}\n`);
  assert.equal(readlinkSync(join(store, top, 'mid')), mid);
  assert.equal(readFileSync(join(store, mid, 'leaf-path'), 'utf8'), `${leaf}\n`);
  assert.equal(readFileSync(join(store, leaf), 'utf8'), `leaf-${closure.nonce}\n`);

  // Trusting only a different key: the same copy is refused for lack of a valid signature.
  const other = await generateKey(uploader, 'other-1');
  const distrustful = await createNixEnv(t, { trustedPublicKeys: [other.publicKey] });
  const store2 = distrustful.freshPath('client-store');
  const res = await distrustful.tryRun('nix', ['copy', '--from', cacheUrl, '--to', store2, top]);
  assert.notEqual(res.code, 0, `copy trusting only other-1 must fail:\n${res.stderr}`);
  assert.match(res.stderr, /lacks a valid signature|not signed by any of the keys/);
  assert.equal(existsSync(join(store2, top)), false, 'top must not have been added');
});

test('nix-store -r substitutes a closure into a chroot store with narhub as substituter', async (t) => {
  const { server, cacheUrl, closure, uploader } = await uploadClosure(t, 'subst-realise');
  const top = closure.paths[2]!;

  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  const res = await client.run('nix-store', ['--store', store, '-r', top, '--option', 'substituters', cacheUrl]);
  assert.match(res.stdout, new RegExp(top.replace(/[.+]/g, '\\$&')));
  const listed = await client.run('nix-store', ['--store', store, '-qR', top]);
  assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
  assert.equal(readFileSync(join(store, top, 'data'), 'utf8'), `top-${closure.nonce}\n`);
  for (const p of closure.paths) {
    await client.run('nix-store', ['--store', store, '--verify-path', p]);
  }

  // With a key narhub did not sign with, substitution is refused.
  const other = await generateKey(uploader, 'other-1');
  const distrustful = await createNixEnv(t, { trustedPublicKeys: [other.publicKey] });
  const store2 = distrustful.freshPath('client-store');
  const bad = await distrustful.tryRun('nix-store', [
    '--store',
    store2,
    '-r',
    top,
    '--option',
    'substituters',
    cacheUrl,
  ]);
  assert.notEqual(bad.code, 0, `substitution trusting only other-1 must fail:\n${bad.stderr}`);
  assert.match(bad.stderr, /not signed by any of the keys/);
  assert.equal(existsSync(join(store2, top)), false);
});
