// Fault injection with real processes: the server is killed with SIGKILL at random points of many
// concurrent uploads, or its disk fills mid-upload. After each fault, everything visible verifies
// (signature, NAR hash and size, references), nothing committed is lost, and the service recovers
// by itself: uploads work again without anyone cleaning up. S3 answering 500 and 503 in the middle
// of a multipart upload is injected in front of s3rver (test/helpers/s3.ts); S3 dying outright is
// s3rver in a process of its own, killed and started again (test/helpers/s3-process.ts).
import assert, { AssertionError } from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import type { TestPath } from '../helpers/build-app.js';
import { checkVisible } from '../helpers/cache-check.js';
import { s3StorageConfig, startS3 } from '../helpers/s3.js';
import { startS3Process } from '../helpers/s3-process.js';
import { createToken, startServer } from '../helpers/server.js';
import { tempFiles } from '../helpers/temp-files.js';
import { makeTempDir } from '../helpers/tmp.js';
import { nativeUpload, nixProtocolUpload, randomPath } from '../helpers/uploaders.js';

const ROUNDS = 3;
const WORKERS = 12;
/** Paths per worker: more than a round can upload before its kill. */
const CHAIN = 30;

/** Uploads answered with success so far, by every worker of every round. */
let succeeded = 0;

/** A chain of paths, each referring to the one before, uploaded in order until something fails. */
async function uploadChain(
  kind: 'nix' | 'native',
  url: string,
  token: string,
  worker: number,
  attempted: string[],
): Promise<number> {
  let previous: TestPath | undefined;
  let done = 0;
  for (let i = 0; i < CHAIN; i++) {
    // Mostly small paths, some of a few MB, so kills land between requests and inside bodies.
    const size =
      i % 4 === 3 ? 1_000_000 + Math.floor(Math.random() * 3_000_000) : 200 + Math.floor(Math.random() * 20_000);
    const p = randomPath(`w${worker}-${i}`, size, previous ? [previous.basename] : [], i % 2 ? 'zstd' : 'none');
    attempted.push(p.hashPart);
    try {
      if (kind === 'nix') await nixProtocolUpload(`${url}/main`, token, p);
      else await nativeUpload(url, 'main', token, p);
    } catch {
      return done;
    }
    previous = p;
    done++;
    succeeded++;
  }
  return done;
}

test('kill -9 amid uploads: the visible verifies, nothing committed is lost, no temp file survives', async (t) => {
  const dataDir = await makeTempDir(t, 'narhub-kill-');
  let server = await startServer(t, { dataDir });
  const { token } = await createToken(dataDir, 'main', 'write');
  const publicKey = server.publicKey;
  const attempted: string[] = [];
  let committed = new Set<string>();
  for (let round = 0; round < ROUNDS; round++) {
    const uploads = Array.from({ length: WORKERS }, (_, w) =>
      uploadChain(w % 2 ? 'native' : 'nix', server.url, token, round * 100 + w, attempted),
    );
    // Kill at a random point once uploads are going (on a loaded machine the first may take a while).
    const before = succeeded;
    for (let waited = 0; succeeded === before && waited < 30_000; waited += 50) await sleep(50);
    await sleep(Math.random() * 1000);
    await server.stop('SIGKILL');
    const uploaded = (await Promise.all(uploads)).reduce((a, b) => a + b, 0);
    server = await startServer(t, { dataDir });
    // Nothing uploads now: whatever the killed server was writing is gone, not left to age.
    assert.deepEqual(tempFiles(join(dataDir, 'store')), [], "the restart removed the killed uploads' temporary files");
    const visible = await checkVisible(`${server.url}/main`, publicKey, attempted);
    for (const h of committed) assert.ok(visible.has(h), `${h} was visible before the kill and is still`);
    assert.ok(visible.size >= uploaded, `every upload that was answered with success is visible (${uploaded})`);
    committed = visible;
  }
  // The service recovers by itself: a whole chain uploads both ways after the last restart.
  const after: string[] = [];
  assert.equal(await uploadChain('nix', server.url, token, 999, after), CHAIN);
  assert.equal(await uploadChain('native', server.url, token, 998, after), CHAIN);
  assert.equal((await checkVisible(`${server.url}/main`, publicKey, after)).size, 2 * CHAIN);
  assert.ok(committed.size > 0, 'some uploads completed between kills');
});

/**
 * A fresh directory on a tmpfs of `size` (narhub's tests run as root, in CI too). Unmounted lazily
 * at the end, so a server still holding files open does not stop the clean-up.
 */
function smallDisk(t: { after(fn: () => void): void }, size: string): string {
  const parent = mkdtempSync(join(tmpdir(), 'narhub-full-'));
  const dir = join(parent, 'data');
  mkdirSync(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  t.after(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(parent, { recursive: true, force: true });
  });
  return dir;
}

function bytesUnder(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce((n, e) => {
    const full = join(dir, e.name);
    return n + (e.isDirectory() ? bytesUnder(full) : statSync(full).size);
  }, 0);
}

test('a full disk mid-upload: the upload fails with a reason, nothing partial left, uploads work again', async (t) => {
  const dataDir = smallDisk(t, '24m');
  const server = await startServer(t, { dataDir });
  const { token } = await createToken(dataDir, 'main', 'write');
  const url = `${server.url}/main`;
  const small = randomPath('small', 10_000);
  await nixProtocolUpload(url, token, small);
  const usedBefore = bytesUnder(join(dataDir, 'store'));

  // Bigger than the space left: both upload routes fail, and answer why (a storage error, 5xx, so a
  // client may try again later) rather than dropping the connection.
  for (const [kind, upload, reason] of [
    ['nix', (p: TestPath) => nixProtocolUpload(url, token, p), /^Error: NAR PUT 5\d\d: .*STORAGE_ERROR/],
    ['native', (p: TestPath) => nativeUpload(server.url, 'main', token, p), /^Error: native PUT 503: .*STORAGE_ERROR/],
  ] as const) {
    const big = randomPath(`big-${kind}`, 30_000_000);
    await assert.rejects(upload(big), reason, `${kind}: the full disk is reported`);
    const visible = await checkVisible(url, server.publicKey, [small.hashPart, big.hashPart]);
    assert.deepEqual([...visible], [small.hashPart], `${kind}: nothing of the failed upload is visible`);
  }
  // The failed uploads' bytes are gone, so the space is back without anyone cleaning up.
  await sleep(200);
  assert.ok(bytesUnder(join(dataDir, 'store')) < usedBefore + 1_000_000, 'no partial file is left in the store');
  const after = [randomPath('after-1', 2_000_000), randomPath('after-2', 2_000_000)];
  await nixProtocolUpload(url, token, after[0]!);
  await nativeUpload(server.url, 'main', token, after[1]!);
  const visible = await checkVisible(url, server.publicKey, [small.hashPart, ...after.map((p) => p.hashPart)]);
  assert.equal(visible.size, 3);
});

test('S3 answering 500, then 503, mid-multipart: the upload fails, nothing visible, then uploads work', async (t) => {
  const s3 = await startS3(t);
  const dataDir = await makeTempDir(t, 'narhub-s3-fault-');
  const configFile = join(dataDir, 'config.json');
  writeFileSync(
    configFile,
    JSON.stringify({ storage: await s3.storageConfig(dataDir, { partSize: '5M', queueSize: 2 }) }),
  );
  const server = await startServer(t, { dataDir, args: ['--config', configFile] });
  const { token } = await createToken(dataDir, 'main', 'write', ['--config', configFile]);
  const url = `${server.url}/main`;
  const attempted: string[] = [];
  for (const [status, kind] of [
    [500, 'nix'],
    [503, 'native'],
  ] as const) {
    // 16 MB of random bytes: four parts; S3 starts failing at the second.
    const big = randomPath(`s3-${status}-${kind}`, 16_000_000);
    attempted.push(big.hashPart);
    s3.failFrom({ status, afterParts: 2 });
    const upload = kind === 'nix' ? nixProtocolUpload(url, token, big) : nativeUpload(server.url, 'main', token, big);
    await assert.rejects(upload, /(PUT 5\d\d|fetch failed)/, `S3 ${status}: the ${kind} upload fails`);
    s3.heal();
    assert.ok(
      s3.requests.some((r) => r.startsWith('PUT ') && r.includes('partNumber')),
      'the upload was multipart when S3 failed',
    );
    assert.equal((await checkVisible(url, server.publicKey, attempted)).size, 0, `S3 ${status}: nothing is visible`);
  }
  // S3 works again: both uploads go through, without a restart, and verify.
  const after = [randomPath('s3-after-nix', 12_000_000), randomPath('s3-after-native', 12_000_000)];
  await nixProtocolUpload(url, token, after[0]!);
  await nativeUpload(server.url, 'main', token, after[1]!);
  const visible = await checkVisible(url, server.publicKey, [...attempted, ...after.map((p) => p.hashPart)]);
  assert.deepEqual([...visible].sort(), after.map((p) => p.hashPart).sort());
});

/**
 * GETs a committed path's NAR over and over until stopped, failing the test on any response that
 * comes whole (a 200 read to its end) with other bytes than the NAR as uploaded. An error status
 * or a cut-off body is a failed read, which a client notices and retries; a wrong body is not.
 */
function readWhileFaulting(cacheUrl: string, p: TestPath) {
  let stopping = false;
  let whole = 0;
  let failed = 0;
  const loop = (async () => {
    while (!stopping) {
      try {
        const res = await fetch(`${cacheUrl}/${p.narUrl}`);
        const body = Buffer.from(await res.arrayBuffer());
        if (res.status !== 200) failed++;
        else {
          assert.ok(body.equals(p.file), `a NAR served whole is the NAR as uploaded (${body.length} bytes)`);
          whole++;
        }
      } catch (err) {
        if (err instanceof AssertionError) throw err;
        failed++;
      }
      await sleep(20);
    }
  })();
  return {
    async stop(): Promise<{ whole: number; failed: number }> {
      stopping = true;
      await loop;
      return { whole, failed };
    },
  };
}

/** Keys of the objects under `prefix` in s3rver's data directory of `bucket`. */
function objectKeys(dir: string, bucket: string, prefix: string): string[] {
  const root = join(dir, bucket, prefix);
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('._S3rver_object'))
    .map((n) => `${prefix}${n.replace(/\._S3rver_object$/, '')}`);
}

test('S3 killed mid-multipart: the upload fails, nothing partial visible; once S3 is back uploads work', async (t) => {
  const s3 = await startS3Process(t);
  const dataDir = await makeTempDir(t, 'narhub-s3-kill-');
  const configFile = join(dataDir, 'config.json');
  const storage = await s3StorageConfig(s3.endpoint, s3.bucket, dataDir, { partSize: '5M', queueSize: 2 });
  writeFileSync(configFile, JSON.stringify({ storage }));
  const server = await startServer(t, { dataDir, args: ['--config', configFile] });
  const { token } = await createToken(dataDir, 'main', 'write', ['--config', configFile]);
  const url = `${server.url}/main`;
  // A committed path (itself a multipart upload), read all along while S3 dies and comes back.
  const committed = randomPath('s3-kill-committed', 12_000_000);
  await nixProtocolUpload(url, token, committed);
  const reader = readWhileFaulting(url, committed);

  const attempted: string[] = [];
  for (const kind of ['nix', 'native'] as const) {
    // 16 MB of random bytes: four parts, two in flight; S3 dies as the first part arrives.
    const big = randomPath(`s3-kill-${kind}`, 16_000_000);
    attempted.push(big.hashPart);
    const partArrives = s3.nextRequest(/^PUT \S+ \[[^\]]*\bpartNumber\b/);
    const upload = kind === 'nix' ? nixProtocolUpload(url, token, big) : nativeUpload(server.url, 'main', token, big);
    upload.catch(() => undefined); // awaited below, once S3 is dead
    await partArrives;
    await s3.kill();
    await assert.rejects(upload, /PUT 5\d\d: .*STORAGE_ERROR/, `S3 killed: the ${kind} upload fails with a reason`);
    // While S3 is away, the server still answers, and the failed path is not there.
    const missing = await fetch(`${url}/${big.hashPart}.narinfo`);
    assert.equal(missing.status, 404, await missing.text());
    await s3.restart();
    const visible = await checkVisible(url, server.publicKey, [committed.hashPart, ...attempted]);
    assert.deepEqual(
      [...visible],
      [committed.hashPart],
      `S3 killed during the ${kind} upload: nothing of it is visible`,
    );
  }

  // S3 is back: both uploads go through at once, without a restart of narhub, and verify.
  const after = [randomPath('s3-back-nix', 12_000_000), randomPath('s3-back-native', 12_000_000)];
  await nixProtocolUpload(url, token, after[0]!);
  await nativeUpload(server.url, 'main', token, after[1]!);
  const { whole } = await reader.stop();
  assert.ok(whole > 0, 'the committed NAR was read whole');
  const visible = await checkVisible(url, server.publicKey, [
    committed.hashPart,
    ...attempted,
    ...after.map((p) => p.hashPart),
  ]);
  assert.deepEqual([...visible].sort(), [committed.hashPart, ...after.map((p) => p.hashPart)].sort());
  // The bucket alone is a cache too: it holds the NARs of the committed paths and nothing of the failed uploads.
  const nars = objectKeys(s3.dir, s3.bucket, 'main/nar/');
  assert.equal(nars.length, 3, nars.join('\n'));
  assert.ok(nars.includes(`main/${committed.narUrl}`) && nars.includes(`main/${after[0]!.narUrl}`), nars.join('\n'));
});
