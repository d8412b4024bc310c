// Content-addressed paths the real Nix 2.8 made (`nix-store --add-fixed`, flat and recursive, and
// `builtins.toFile`) pass narhub's CA checks on the way up (`nix copy --to`) and substitute into a
// fresh store, where Nix checks the CA again.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { getNarinfo } from '../helpers/http.js';
import { createNixEnv } from '../helpers/nix.js';
import { lines } from '../helpers/scenario.js';
import { createToken, startServer } from '../helpers/server.js';

test('Nix-made CA paths (flat, recursive, toFile) upload with nix copy --to and substitute', async (t) => {
  const server = await startServer(t);
  const cacheUrl = `${server.url}/main`;
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  const nonce = randomBytes(8).toString('hex');

  const flatFile = join(nix.workDir, `flat-${nonce}.txt`);
  await writeFile(flatFile, `flat ${nonce}\n`);
  const dir = join(nix.workDir, `tree-${nonce}`);
  await mkdir(join(dir, 'sub'), { recursive: true });
  await writeFile(join(dir, 'sub', 'file'), `tree ${nonce}\n`);
  await writeFile(join(dir, 'run'), '#!/bin/sh\n', { mode: 0o755 });
  await symlink('sub/file', join(dir, 'link'));

  const add = async (...args: string[]) => (await nix.run('nix-store', ['--add-fixed', ...args])).stdout.trim();
  const flat = await add('sha256', flatFile);
  const recursive = await add('--recursive', 'sha256', dir);
  const recursiveSha512 = await add('--recursive', 'sha512', dir);
  const expr =
    `let a = builtins.toFile "ca-a-${nonce}.txt" "text ${nonce}\\n"; ` +
    `in builtins.toFile "ca-b-${nonce}.txt" "uses \${a}\\n"`;
  const textB = JSON.parse(
    (await nix.run('nix-instantiate', ['--eval', '--read-write-mode', '--json', '-E', expr])).stdout,
  ) as string;
  const textA = lines((await nix.run('nix-store', ['-q', '--references', textB])).stdout)[0]!;
  const all = [flat, recursive, recursiveSha512, textA, textB];

  const local = JSON.parse((await nix.run('nix', ['path-info', '--json', ...all])).stdout) as {
    path: string;
    ca: string;
  }[];
  const caOf = new Map(local.map((l) => [l.path, l.ca]));
  assert.match(caOf.get(flat)!, /^fixed:sha256:/);
  assert.match(caOf.get(recursive)!, /^fixed:r:sha256:/);
  assert.match(caOf.get(recursiveSha512)!, /^fixed:r:sha512:/);
  assert.match(caOf.get(textB)!, /^text:sha256:/);

  // xz (Nix's default) for some, none for others: the stored NAR is read back either way.
  await nix.run('nix', ['copy', '--to', cacheUrl, flat, textB]);
  await nix.run('nix', ['copy', '--to', `${cacheUrl}?compression=none`, recursive, recursiveSha512]);
  for (const p of all) {
    const got = await getNarinfo(cacheUrl, p);
    assert.equal(got.status, 200, `${p}: ${got.body}`);
    assert.equal(got.narinfo!.get('CA'), caOf.get(p), `${p} keeps its CA`);
  }

  // Nix checks each CA itself while it substitutes; content-addressed paths need no signature.
  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', cacheUrl, '--to', store, ...all]);
  for (const p of all) await client.run('nix-store', ['--store', store, '--verify-path', p]);
  assert.equal(await readFile(join(store, flat), 'utf8'), `flat ${nonce}\n`);
  assert.equal(await readFile(join(store, recursive, 'link'), 'utf8'), `tree ${nonce}\n`);
  assert.equal(await readFile(join(store, textB), 'utf8'), `uses ${textA}\n`);
});
