// Nix's store tools pointed at narhub: path-info, store verify, copy-log + log, store sign.
import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { test } from 'node:test';
import { getNarinfo, verifyNarinfoSig } from '../helpers/http.js';
import { createNixEnv, generateKey } from '../helpers/nix.js';
import { uploadClosure } from '../helpers/scenario.js';

interface PathInfo {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  deriver?: string;
  signatures?: string[];
  url?: string;
}

test('nix path-info --json against narhub matches the local store', async (t) => {
  const { cacheUrl, closure, uploader } = await uploadClosure(t, 'tools-pathinfo');
  const local = JSON.parse(
    (await uploader.run('nix', ['path-info', '--json', '-r', closure.top])).stdout,
  ) as PathInfo[];

  const reader = await createNixEnv(t);
  const remote = JSON.parse(
    (await reader.run('nix', ['path-info', '--store', cacheUrl, '--json', '-r', closure.top])).stdout,
  ) as PathInfo[];

  assert.deepEqual(remote.map((r) => r.path).sort(), [...closure.paths].sort());
  for (const p of closure.paths) {
    const l = local.find((x) => x.path === p)!;
    const r = remote.find((x) => x.path === p)!;
    assert.equal(r.narHash, l.narHash, `narHash of ${p}`);
    assert.equal(r.narSize, l.narSize, `narSize of ${p}`);
    assert.deepEqual([...r.references].sort(), [...l.references].sort(), `references of ${p}`);
    assert.equal(r.deriver, l.deriver, `deriver of ${p}`);
    assert.ok(
      r.signatures?.some((s) => s.startsWith('main-1:')),
      `signatures of ${p}: ${JSON.stringify(r.signatures)}`,
    );
    assert.match(r.url ?? '', /^nar\/.+\.nar\.zst$/);
  }
});

test('nix store verify against narhub passes with the cache key and fails with another', async (t) => {
  const { server, cacheUrl, closure, uploader } = await uploadClosure(t, 'tools-verify');

  const good = await createNixEnv(t);
  const ok = await good.tryRun('nix', [
    'store',
    'verify',
    '--store',
    cacheUrl,
    '--trusted-public-keys',
    server.publicKey,
    '-r',
    closure.top,
  ]);
  assert.equal(ok.code, 0, `verify with main-1 must pass:\n${ok.stderr}`);
  for (const p of closure.paths) assert.ok(ok.stderr.includes(`checking '${p}'`), `did not check ${p}:\n${ok.stderr}`);
  assert.doesNotMatch(ok.stderr, /untrusted|corrupt|error/i);

  const other = await generateKey(uploader, 'other-1');
  const bad = await createNixEnv(t);
  const res = await bad.tryRun('nix', [
    'store',
    'verify',
    '--store',
    cacheUrl,
    '--trusted-public-keys',
    other.publicKey,
    '-r',
    closure.top,
  ]);
  // Exit status 2 = "some path is untrusted" (not 1 = corrupt, not 4 = I/O error).
  assert.equal(res.code, 2, `verify with other-1 must report untrusted paths:\n${res.stderr}`);
  for (const p of closure.paths) assert.ok(res.stderr.includes(`path '${p}' is untrusted`), res.stderr);
});

test('nix store copy-log --to narhub, then nix log --store narhub prints the build log', async (t) => {
  const { cacheUrl, closure, uploader } = await uploadClosure(t, 'tools-log');
  const topDrv = closure.drvs[2]!;
  const marker = closure.logLines[2]!;

  // Before the upload the cache has no log (so a later success cannot come from elsewhere).
  const before = await createNixEnv(t);
  const missing = await before.tryRun('nix', ['log', '--store', cacheUrl, closure.top]);
  assert.notEqual(missing.code, 0, `nix log must fail before copy-log:\n${missing.stdout}`);
  assert.ok(!missing.stdout.includes(marker));
  assert.equal((await fetch(`${cacheUrl}/log/${basename(topDrv)}`)).status, 404);

  await uploader.run('nix', ['store', 'copy-log', '--to', cacheUrl, topDrv]);

  const reader = await createNixEnv(t);
  const log = await reader.run('nix', ['log', '--store', cacheUrl, closure.top]);
  assert.ok(log.stdout.includes(marker), `log lacks ${marker}:\n${log.stdout}\n${log.stderr}`);

  const res = await fetch(`${cacheUrl}/log/${basename(topDrv)}`);
  assert.equal(res.status, 200);
  assert.ok((await res.text()).includes(marker));
});

test('nix store sign --store narhub adds a second signature and changes nothing else', async (t) => {
  const { server, cacheUrl, closure, uploader } = await uploadClosure(t, 'tools-sign');
  const other = await generateKey(uploader, 'other-1');

  const before = new Map<string, string[]>();
  for (const p of closure.paths) {
    const got = await getNarinfo(cacheUrl, p);
    assert.equal(got.status, 200);
    assert.deepEqual(
      got.narinfo!.all('Sig').map((s) => s.split(':')[0]),
      ['main-1'],
      got.body,
    );
    before.set(
      p,
      got.narinfo!.fields.filter(([k]) => k !== 'Sig').map(([k, v]) => `${k}: ${v}`),
    );
  }

  await uploader.run('nix', ['store', 'sign', '--store', cacheUrl, '-k', other.secretKeyFile, '-r', closure.top]);

  for (const p of closure.paths) {
    const got = await getNarinfo(cacheUrl, p);
    assert.equal(got.status, 200);
    const ni = got.narinfo!;
    const sigs = ni.all('Sig');
    assert.equal(sigs.length, 2, `expected two Sig lines:\n${got.body}`);
    assert.deepEqual(sigs.map((s) => s.split(':')[0]).sort(), ['main-1', 'other-1']);
    assert.ok(verifyNarinfoSig(ni, server.publicKey), `main-1 Sig invalid:\n${got.body}`);
    assert.ok(verifyNarinfoSig(ni, other.publicKey), `other-1 Sig invalid:\n${got.body}`);
    assert.deepEqual(
      ni.fields.filter(([k]) => k !== 'Sig').map(([k, v]) => `${k}: ${v}`),
      before.get(p),
      'fields other than Sig must be unchanged',
    );
  }

  // A client trusting only other-1 now accepts the paths.
  const verifier = await createNixEnv(t);
  const res = await verifier.tryRun('nix', [
    'store',
    'verify',
    '--store',
    cacheUrl,
    '--trusted-public-keys',
    other.publicKey,
    '-r',
    closure.top,
  ]);
  assert.equal(res.code, 0, `verify with other-1 after signing:\n${res.stderr}`);
});
