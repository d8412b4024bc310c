// GC and key rotation on S3 storage (s3rver): GC deletes the removed paths' objects and keeps the
// pinned closure, which real Nix substitutes; after a rotation the re-signed narinfos are in the
// bucket, and a client trusting only the new key substitutes everything.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import Sqlite from 'better-sqlite3';
import { createNixEnv } from '../helpers/nix.js';
import { startS3 } from '../helpers/s3.js';
import { lines, uploadClosure } from '../helpers/scenario.js';
import { createToken, runCliOk, startServer } from '../helpers/server.js';
import { makePath, nativeUploadBody } from '../helpers/build-app.js';
import { createS3BlobStore } from '../../src/storage/s3-blob-store.js';
import { makeTempDir } from '../helpers/tmp.js';

test('on S3: GC removes objects and keeps the pinned closure; rotation re-signs in the bucket', async (t) => {
  const s3 = await startS3(t);
  const dataDir = await makeTempDir(t, 'narhub-data-');
  const config = join(dataDir, 'config.json');
  await writeFile(config, JSON.stringify({ storage: await s3.storageConfig(dataDir, { prefix: 'gc/' }) }));
  const server = await startServer(t, { dataDir, args: ['--config', config] });
  const kept = await uploadClosure(t, 's3-kept', { server });
  const gone = await uploadClosure(t, 's3-gone', { server });
  const object = (key: string) => join(s3.dir, s3.bucket, `gc/main/${key}._S3rver_object`);
  const hash = (p: string) => p.slice(11, 43);
  for (const p of gone.closure.paths) assert.ok(existsSync(object(`${hash(p)}.narinfo`)), 'stored in the bucket');

  const api = (path: string, body: object) =>
    fetch(`${server.url}/api/v1${path}`, {
      method: path.includes('/pins') || path.endsWith('/gc') || path.includes('/keys/') ? 'POST' : 'PATCH',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  assert.equal((await api('/caches/main', { retention: 86_400 })).status, 200);
  assert.equal((await api('/caches/main/pins', { storePath: kept.closure.top, name: 'keep' })).status, 201);
  assert.equal((await api('/caches/main/gc', { dryRun: true })).status, 200);
  const db = new Sqlite(join(dataDir, 'narhub.sqlite'), { timeout: 5000 });
  t.after(() => db.close());
  db.prepare('UPDATE store_paths SET accessed_at = ?').run(Date.now() - 2 * 86_400_000);
  const narUrls = gone.closure.paths.map(
    (p) =>
      (
        db.prepare('SELECT narinfo FROM store_paths WHERE hash_part = ?').get(hash(p)) as { narinfo: string }
      ).narinfo.match(/^URL: (.*)$/m)![1]!,
  );
  const run = (await (await api('/caches/main/gc', {})).json()) as { caches: { paths: { storePath: string }[] }[] };
  assert.deepEqual(run.caches[0]!.paths.map((p) => p.storePath).sort(), [...gone.closure.paths].sort());
  for (const p of gone.closure.paths)
    assert.equal(existsSync(object(`${hash(p)}.narinfo`)), false, 'narinfo object deleted');
  for (const u of narUrls) assert.equal(existsSync(object(u)), false, `${u} deleted`);
  for (const p of kept.closure.paths) assert.ok(existsSync(object(`${hash(p)}.narinfo`)));

  // Rotation: main-2 re-signs the kept closure in the bucket.
  const rotated = (await (await api('/caches/main/keys/rotate', {})).json()) as { publicKey: string };
  for (let i = 0; ; i++) {
    const keys = JSON.parse((await runCliOk(['key', 'list', 'main', '--json'], { dataDir })).stdout) as {
      name: string;
      rewrite: { complete: boolean } | null;
    }[];
    if (keys.find((k) => k.name === 'main-2')?.rewrite?.complete) break;
    assert.ok(i < 300, JSON.stringify(keys));
    await sleep(100);
  }
  const { readFileSync } = await import('node:fs');
  assert.match(readFileSync(object(`${hash(kept.closure.top)}.narinfo`), 'utf8'), /Sig: main-2:/);

  const client = await createNixEnv(t, { trustedPublicKeys: [rotated.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', kept.cacheUrl, '--to', store, kept.closure.top]);
  const got = await client.run('nix', ['path-info', '--store', store, '-r', kept.closure.top]);
  assert.deepEqual(lines(got.stdout), [...kept.closure.paths].sort());
});

test('on S3: objects no row describes are found by a dry run and removed after their grace period', async (t) => {
  const s3 = await startS3(t);
  const dataDir = await makeTempDir(t, 'narhub-data-');
  const config = join(dataDir, 'config.json');
  // No grace: an orphan goes at the first run that sees it (uploads here are over before GC runs).
  await writeFile(
    config,
    JSON.stringify({ storage: await s3.storageConfig(dataDir, { prefix: 'gc/' }), gc: { pendingGracePeriod: 0 } }),
  );
  const server = await startServer(t, { dataDir, args: ['--config', config] });
  const { token } = await createToken(dataDir, 'main', 'write');
  const kept = makePath({ name: 'kept' });
  const up = await fetch(`${server.url}/api/v1/caches/main/paths/${kept.hashPart}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body: nativeUploadBody(kept),
  });
  assert.equal(up.status, 201, await up.text());

  const store = createS3BlobStore(s3.storeOptions('gc/'));
  t.after(() => store.close());
  const orphans = [
    `main/nar/${'1'.repeat(52)}.nar.zst`,
    `main/${'2'.repeat(32)}.narinfo`,
    `main/listing/${'3'.repeat(52)}.nar.zst.ls`,
  ];
  for (const key of orphans) await store.put(key, Buffer.from('left behind'));
  const object = (key: string) => join(s3.dir, s3.bucket, `gc/${key}._S3rver_object`);
  const gc = async (dryRun: boolean) => {
    const res = await fetch(`${server.url}/api/v1/caches/main/gc`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ dryRun }),
    });
    assert.equal(res.status, 200);
    return (await res.json()) as { caches: { orphansFound: number; orphansRemoved: number; pathsRemoved: number }[] };
  };

  const dry = (await gc(true)).caches[0]!;
  assert.deepEqual([dry.orphansFound, dry.orphansRemoved], [3, 0]);
  for (const key of orphans) assert.ok(existsSync(object(key)), `${key} stays through a dry run`);
  const run = (await gc(false)).caches[0]!;
  assert.deepEqual([run.orphansFound, run.orphansRemoved, run.pathsRemoved], [3, 3, 0]);
  for (const key of orphans) assert.equal(existsSync(object(key)), false, `${key} removed`);
  // What rows describe stays: the uploaded path is still served, NAR included.
  const narinfo = await fetch(`${server.url}/main/${kept.hashPart}.narinfo`);
  assert.equal(narinfo.status, 200);
  const url = (await narinfo.text()).match(/^URL: (.*)$/m)![1]!;
  assert.equal((await fetch(`${server.url}/main/${url}`)).status, 200);
  assert.equal((await gc(false)).caches[0]!.orphansFound, 0);
});
