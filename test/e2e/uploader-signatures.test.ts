// A CI signs what it pushes with its own key (`nix copy --to '…?secret-key=FILE'`, as with
// Cachix) and its users trust that key: the real Nix 2.8 against a cache that lists the CI's
// public key as an uploader key, refuses other names, then keeps them under a cap.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { getNarinfo } from '../helpers/http.js';
import { buildClosure, createNixEnv, generateKey } from '../helpers/nix.js';
import { createToken, runCliOk, startServer } from '../helpers/server.js';

test('nix copy with an uploader key: kept, served, substituted by a client trusting only that key', async (t) => {
  const server = await startServer(t);
  const cacheUrl = `${server.url}/main`;
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  const ciKey = await generateKey(nix, 'ci.example.org-1');
  const update = async (...flags: string[]) => {
    await runCliOk(['cache', 'update', 'main', ...flags], { dataDir: server.dataDir });
    await sleep(1100); // a running server sees a cache's settings within a second
  };
  await update('--uploader-key', ciKey.publicKey, '--unknown-signatures', 'refuse');

  // The CI's own key: accepted, kept beside narhub's signature.
  const closure = await buildClosure(nix, 'uploader-ci');
  await nix.run('nix', ['copy', '--to', `${cacheUrl}?secret-key=${ciKey.secretKeyFile}`, closure.top]);
  for (const p of closure.paths) {
    const sigs = (await getNarinfo(cacheUrl, p)).narinfo!.all('Sig');
    assert.ok(
      sigs.some((s) => s.startsWith('ci.example.org-1:')),
      `${p}: ${sigs.join(' ')}`,
    );
    assert.ok(
      sigs.some((s) => s.startsWith('main-1:')),
      `${p}: ${sigs.join(' ')}`,
    );
  }
  // A client trusting the CI's key alone substitutes the closure.
  const user = await createNixEnv(t, { trustedPublicKeys: [ciKey.publicKey] });
  const store = user.freshPath('user-store');
  await user.run('nix', ['copy', '--from', cacheUrl, '--to', store, closure.top]);
  for (const p of closure.paths) await user.run('nix-store', ['--store', store, '--verify-path', p]);

  // Another key under the CI key's name: its signatures do not verify, and Nix reports why.
  const impostor = await generateKey(await createNixEnv(t), 'ci.example.org-1');
  const forgedClosure = await buildClosure(nix, 'uploader-forged');
  const forged = await nix.tryRun('nix', [
    'copy',
    '--to',
    `${cacheUrl}?secret-key=${impostor.secretKeyFile}`,
    forgedClosure.top,
  ]);
  assert.notEqual(forged.code, 0, forged.stderr);
  assert.match(forged.stderr, /HTTP error 400/, forged.stderr);
  assert.match(forged.stderr, /SIGNATURE_INVALID: Sig: signature by uploader key ci\.example\.org-1 does not verify/);
  for (const p of forgedClosure.paths) assert.equal((await getNarinfo(cacheUrl, p)).status, 404, p);

  // A name the cache does not know, while it refuses them.
  const stranger = await generateKey(nix, 'stranger-1');
  const strangerClosure = await buildClosure(nix, 'uploader-stranger');
  const refused = await nix.tryRun('nix', [
    'copy',
    '--to',
    `${cacheUrl}?secret-key=${stranger.secretKeyFile}`,
    strangerClosure.top,
  ]);
  assert.notEqual(refused.code, 0, refused.stderr);
  assert.match(refused.stderr, /SIGNATURE_REFUSED: Sig: stranger-1 is not a key of cache main/, refused.stderr);
  for (const p of strangerClosure.paths) assert.equal((await getNarinfo(cacheUrl, p)).status, 404, p);

  // Once the cache keeps unknown names (at most one a path), the same copy goes through and keeps them.
  await update('--unknown-signatures', 'keep', '--max-uploader-signatures', '1');
  await nix.run('nix', ['copy', '--to', `${cacheUrl}?secret-key=${stranger.secretKeyFile}`, strangerClosure.top]);
  const leaf = strangerClosure.paths[0]!;
  assert.ok((await getNarinfo(cacheUrl, leaf)).narinfo!.all('Sig').some((s) => s.startsWith('stranger-1:')));
  // `nix store sign` adds a second one by a later PUT: past the cap, refused, and Nix says why.
  const second = await generateKey(nix, 'second-1');
  const before = (await getNarinfo(cacheUrl, leaf)).body;
  const sign = await nix.tryRun('nix', [
    'store',
    'sign',
    '--store',
    cacheUrl,
    '--key-file',
    second.secretKeyFile,
    leaf,
  ]);
  assert.notEqual(sign.code, 0, sign.stderr);
  assert.match(sign.stderr, /SIGNATURE_REFUSED: [^\n]*keeps at most 1 per path/, sign.stderr);
  assert.equal((await getNarinfo(cacheUrl, leaf)).body, before, 'nothing appended');
});
