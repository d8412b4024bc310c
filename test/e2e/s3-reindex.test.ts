// Storage is the truth: with S3 storage (s3rver) or local disk, `nix copy --to` narhub, lose the
// database, `narhub reindex`, and the real Nix client substitutes the closure again trusting only
// the cache key. The bucket alone is a Nix binary cache too, and redirectNars sends NAR GETs to
// presigned S3 URLs that Nix 2.8 follows.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { formatNarInfo } from '../../src/nix/narinfo.js';
import { encodeNix32 } from '../../src/nix/nix32.js';
import { parseSecretKey, signNarInfo } from '../../src/nix/signing.js';
import { basicAuth, getNarinfo } from '../helpers/http.js';
import { createNixEnv, type Closure } from '../helpers/nix.js';
import { S3_CREDENTIALS, startS3, type S3Server } from '../helpers/s3.js';
import { lines, uploadClosure } from '../helpers/scenario.js';
import { cacheInfo, createToken, runCliOk, startServer } from '../helpers/server.js';
import { makeTempDir, type Cleanup } from '../helpers/tmp.js';

const REINDEX_TIMEOUT_MS = 60_000;

async function writeConfig(dir: string, config: Record<string, unknown>): Promise<string> {
  const file = join(dir, `config-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

/** What losing the database means: every SQLite file of the data directory gone. */
async function dropDatabase(dataDir: string): Promise<void> {
  for (const f of await readdir(dataDir)) if (f.startsWith('narhub.sqlite')) await rm(join(dataDir, f));
  assert.deepEqual(
    (await readdir(dataDir)).filter((f) => f.startsWith('narhub.sqlite')),
    [],
  );
}

/** Every narinfo of the closure as served now, keyed by store path. */
async function narinfos(
  cacheUrl: string,
  closure: Closure,
  headers: Record<string, string> = {},
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const p of closure.paths) {
    const got = await getNarinfo(cacheUrl, p, headers);
    assert.equal(got.status, 200, `${p}.narinfo: ${got.status} ${got.body}`);
    out.set(p, got.body);
  }
  return out;
}

/** A fresh Nix (fresh XDG cache, chroot store) trusting only `publicKey` substitutes the closure. */
async function substitute(
  t: Cleanup,
  cacheUrl: string,
  publicKey: string,
  closure: Closure,
  netrc?: { host: string; password: string }[],
): Promise<void> {
  const client = await createNixEnv(t, { trustedPublicKeys: [publicKey], ...(netrc ? { netrc } : {}) });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', cacheUrl, '--to', store, closure.top]);
  const listed = await client.run('nix', ['path-info', '--store', store, '-r', closure.top]);
  assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
  for (const p of closure.paths) await client.run('nix-store', ['--store', store, '--verify-path', p]);
  assert.equal(readFileSync(join(store, closure.top, 'data'), 'utf8'), `top-${closure.nonce}\n`);
}

async function bucketKeys(s3: S3Server, prefix: string): Promise<string[]> {
  const client = new S3Client({
    region: 'us-east-1',
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: S3_CREDENTIALS,
  });
  try {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const res = await client.send(
        new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }),
      );
      keys.push(...(res.Contents ?? []).map((o) => o.Key!));
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  } finally {
    client.destroy();
  }
}

async function reindex(dataDir: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return runCliOk(['reindex', ...args], { dataDir, timeoutMs: REINDEX_TIMEOUT_MS });
}

test('S3 storage: nix copy, lose the database, reindex, substitute again', async (t) => {
  const s3 = await startS3(t);
  const dataDir = await makeTempDir(t, 'narhub-data-');
  const config = await writeConfig(dataDir, {
    storage: await s3.storageConfig(dataDir, { prefix: 'narhub/', partSize: 5 * 1024 * 1024 }),
  });

  const first = await startServer(t, { dataDir, args: ['--config', config] });
  const { cacheUrl, closure, uploader } = await uploadClosure(t, 's3-reindex', { server: first });
  const topDrv = closure.drvs[2]!;
  await uploader.run('nix', ['store', 'copy-log', '--to', cacheUrl, topDrv]);
  const before = await narinfos(cacheUrl, closure);
  await first.stop();

  // The bucket holds the cache in Nix's own layout under the prefix, and nothing else of narhub's.
  const keys = await bucketKeys(s3, '');
  assert.ok(
    keys.every((k) => k.startsWith('narhub/main/')),
    keys.join('\n'),
  );
  assert.ok(keys.includes('narhub/main/nix-cache-info'));
  assert.ok(keys.includes(`narhub/main/log/${basename(topDrv)}`));
  for (const p of closure.paths) {
    const hash = basename(p).slice(0, 32);
    assert.ok(keys.includes(`narhub/main/${hash}.narinfo`), `${hash}.narinfo in the bucket`);
    const url = /^URL: (.*)$/m.exec(before.get(p)!)![1]!;
    assert.ok(keys.includes(`narhub/main/${url}`), `${url} in the bucket`);
    assert.ok(keys.includes(`narhub/main/listing/${url.slice('nar/'.length)}.ls`), `listing of ${url}`);
  }

  await dropDatabase(dataDir);
  const res = await reindex(dataDir, ['--config', config]);
  assert.match(
    res.stdout,
    /^main: 3 paths \(3 added, 0 updated, 0 skipped\), 1 logs, 3 listings, .* keys main-1; private, recreated$/m,
    res.stdout,
  );
  // Visibility is not in storage: an undeclared cache comes back private, and says so.
  assert.match(res.stderr, /main: recreated as a private cache/);
  assert.match(res.stderr, /tokens live only in the database/);

  // Idempotent: a second run finds everything in place.
  const again = await reindex(dataDir, ['--config', config]);
  assert.match(again.stdout, /^main: 3 paths \(0 added, 0 updated, 0 skipped\), 1 logs, 3 listings,/m, again.stdout);

  // Tokens are gone with the database: the admin makes a new one, as the note says.
  const second = await startServer(t, { dataDir, args: ['--config', config] });
  assert.equal(second.publicKey, first.publicKey, 'the signing key came back from keys/main-1.secret');
  const { token } = await createToken(dataDir, 'main', 'read');
  const secondUrl = `${second.url}/main`;
  const auth = basicAuth(token);
  assert.deepEqual(await narinfos(secondUrl, closure, auth), before, 'the very same signed narinfos');
  for (const text of before.values()) {
    const url = /^URL: (.*)$/m.exec(text)![1]!;
    const head = await fetch(`${secondUrl}/${url}`, { method: 'HEAD', headers: auth });
    assert.equal(head.status, 200, `HEAD ${url} after reindex`);
  }
  const log = await fetch(`${secondUrl}/log/${basename(topDrv)}`, { headers: auth });
  assert.equal(log.status, 200);
  assert.ok((await log.text()).includes(closure.logLines[2]!));

  await substitute(t, secondUrl, first.publicKey, closure, [{ host: '127.0.0.1', password: token }]);
});

test('S3 storage: the bucket alone is a Nix binary cache the real client substitutes from', async (t) => {
  const s3 = await startS3(t);
  const dataDir = await makeTempDir(t, 'narhub-data-');
  const config = await writeConfig(dataDir, { storage: await s3.storageConfig(dataDir, { prefix: 'deploy/cache/' }) });
  const server = await startServer(t, { dataDir, args: ['--config', config] });
  const { cacheUrl, closure, uploader } = await uploadClosure(t, 's3-bucket-cache', { server, compression: 'xz' });
  await uploader.run('nix', ['store', 'copy-log', '--to', cacheUrl, closure.drvs[2]!]);
  await server.stop();

  // Anonymous GETs straight from the object store, narhub stopped.
  const bucketUrl = `${s3.endpoint}/${s3.bucket}/deploy/cache/main`;
  assert.equal((await fetch(`${bucketUrl}/nix-cache-info`)).status, 200);
  await substitute(t, bucketUrl, server.publicKey, closure);
  const reader = await createNixEnv(t);
  const log = await reader.run('nix', ['log', '--store', bucketUrl, closure.top]);
  assert.ok(log.stdout.includes(closure.logLines[2]!), log.stdout);
});

test('local storage: reindex restores a public cache and skips what storage cannot back', async (t) => {
  const first = await startServer(t);
  const { dataDir } = first;
  const { cacheUrl, closure } = await uploadClosure(t, 'local-reindex', { server: first });
  const before = await narinfos(cacheUrl, closure);
  await first.stop();

  // Two narinfos that must not become paths: one does not parse, one is signed but its NAR is gone.
  const root = join(dataDir, 'store', 'main');
  const junkHash = encodeNix32(Buffer.alloc(20, 7));
  await writeFile(join(root, `${junkHash}.narinfo`), 'this is not a narinfo\n');
  const orphanHash = encodeNix32(Buffer.alloc(20, 9));
  const missingNar = `${encodeNix32(createHash('sha256').update('gone').digest())}.nar.zst`;
  const info = {
    storePath: `/nix/store/${orphanHash}-orphan`,
    url: `nar/${missingNar}`,
    compression: 'zstd',
    narHash: `sha256:${encodeNix32(createHash('sha256').update('nar').digest())}`,
    narSize: 120,
    references: [],
    sigs: [] as string[],
  };
  info.sigs = [signNarInfo(parseSecretKey(readFileSync(join(dataDir, 'keys', 'main-1.secret'), 'utf8')), info)];
  await writeFile(join(root, `${orphanHash}.narinfo`), formatNarInfo(info));

  await dropDatabase(dataDir);
  const res = await reindex(dataDir, ['--public']);
  assert.match(
    res.stdout,
    /^main: 3 paths \(3 added, 0 updated, 2 skipped\), 0 logs, 3 listings, .* keys main-1; public, recreated$/m,
    res.stdout,
  );
  assert.match(res.stderr, new RegExp(`${junkHash}\\.narinfo skipped: it does not parse`));
  assert.match(res.stderr, new RegExp(`${orphanHash}\\.narinfo skipped: its NAR main/nar/${missingNar} is missing`));
  assert.equal((await cacheInfo(dataDir, 'main')).private, false);

  const second = await startServer(t, { dataDir });
  assert.equal(second.publicKey, first.publicKey);
  assert.deepEqual(await narinfos(`${second.url}/main`, closure), before);
  assert.equal((await fetch(`${second.url}/main/${orphanHash}.narinfo`)).status, 404);
  await substitute(t, `${second.url}/main`, first.publicKey, closure);
});

test('redirectNars: NAR GETs answer 302 to a presigned S3 URL and Nix 2.8 follows it', async (t) => {
  const s3 = await startS3(t);
  const dataDir = await makeTempDir(t, 'narhub-data-');
  // S3 under another host name than narhub's (127.0.0.1), as in a deployment: curl hands netrc
  // credentials to any port of the same host, and S3 refuses a presigned request that also has
  // an Authorization header.
  const endpoint = s3.endpoint.replace('127.0.0.1', 'localhost');
  const storage = { ...(await s3.storageConfig(dataDir)), endpoint };
  const plain = await writeConfig(dataDir, { storage });
  const first = await startServer(t, { dataDir, args: ['--config', plain] });
  const { closure } = await uploadClosure(t, 'redirect', { server: first });
  await first.stop();

  const redirecting = await writeConfig(dataDir, {
    storage,
    caches: [
      { name: 'main', redirectNars: true, redirectExpiry: 120 },
      { name: 'priv', private: true, redirectNars: true },
    ],
  });
  const server = await startServer(t, { dataDir, args: ['--config', redirecting] });
  const cacheUrl = `${server.url}/main`;
  const served = await narinfos(cacheUrl, closure);

  for (const text of served.values()) {
    const url = /^URL: (.*)$/m.exec(text)![1]!;
    const fileHash = /^FileHash: sha256:(.*)$/m.exec(text)![1]!;
    const res = await fetch(`${cacheUrl}/${url}`, { redirect: 'manual' });
    assert.equal(res.status, 302, `GET ${url}`);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const location = res.headers.get('location')!;
    assert.ok(location.startsWith(`${endpoint}/${s3.bucket}/main/${url}?`), location);
    assert.match(location, /X-Amz-Expires=120/);
    // HEAD stays narhub's own answer, with the length.
    const head = await fetch(`${cacheUrl}/${url}`, { method: 'HEAD', redirect: 'manual' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), /^FileSize: (\d+)$/m.exec(text)![1]);
    // The presigned URL serves the very bytes the narinfo promises.
    const bytes = Buffer.from(await (await fetch(location)).arrayBuffer());
    assert.equal(encodeNix32(createHash('sha256').update(bytes).digest()), fileHash);
  }

  // A private cache checks the read token before it hands out a URL.
  const { token: writeToken } = await createToken(dataDir, 'priv', 'write');
  const { token: readToken } = await createToken(dataDir, 'priv', 'read');
  const privUploader = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: writeToken }] });
  await privUploader.run('nix', ['copy', '--to', `${server.url}/priv?compression=zstd`, closure.paths[0]!]);
  const leafInfo = await getNarinfo(`${server.url}/priv`, closure.paths[0]!, basicAuth(readToken));
  assert.equal(leafInfo.status, 200);
  const leafNar = `${server.url}/priv/${leafInfo.narinfo!.get('URL')}`;
  assert.equal((await fetch(leafNar, { redirect: 'manual' })).status, 401);
  const allowed = await fetch(leafNar, { redirect: 'manual', headers: basicAuth(readToken) });
  assert.equal(allowed.status, 302);
  assert.ok(allowed.headers.get('location')!.startsWith(`${endpoint}/${s3.bucket}/priv/nar/`));

  // The real client downloads every NAR from S3 through the redirect.
  const mark = s3.requests.length;
  await substitute(t, cacheUrl, server.publicKey, closure);
  const fromS3 = s3.requests
    .slice(mark)
    .filter((r) => r.startsWith(`GET /${s3.bucket}/main/nar/`) && r.includes('X-Amz-Signature'));
  assert.equal(fromS3.length, closure.paths.length, s3.requests.slice(mark).join('\n'));

  // And from the private cache, with its read token in netrc for narhub's host only.
  const privMark = s3.requests.length;
  const privKey = (await cacheInfo(dataDir, 'priv')).publicKeys[0]!;
  const privClient = await createNixEnv(t, {
    trustedPublicKeys: [privKey],
    netrc: [{ host: '127.0.0.1', password: readToken }],
  });
  const privStore = privClient.freshPath('client-store');
  await privClient.run('nix', ['copy', '--from', `${server.url}/priv`, '--to', privStore, closure.paths[0]!]);
  await privClient.run('nix-store', ['--store', privStore, '--verify-path', closure.paths[0]!]);
  assert.equal(s3.requests.slice(privMark).filter((r) => r.startsWith(`GET /${s3.bucket}/priv/nar/`)).length, 1);
});
