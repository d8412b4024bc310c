// Pull-through caching against real HTTP: narhub (in-process, listening on a loopback port) in
// front of a binary-cache directory served by a local HTTP server that can misbehave.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { verifyNarInfoSig } from '../../../src/nix/signing.js';
import { basic, makePath, putNar, putNarinfo } from '../../helpers/build-app.js';
import { closureUpstream, committed, FAST, get, narhubInFront, storedNarFiles } from '../../helpers/pull-through.js';
import { addToCacheDirectory, serveCacheDirectory, writeCacheDirectory } from '../../helpers/upstream-server.js';

test("a narinfo miss is answered from an upstream with narhub's URL and signature, and the upstream's", async (t) => {
  const { top, mid, cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);

  const res = await get(`${h.url}/main/${top.hashPart}.narinfo`);
  assert.equal(res.status, 200);
  const info = parseNarInfo(res.body.toString());
  assert.equal(info.storePath, top.storePath);
  assert.equal(info.url, `nar/${top.fileName}`);
  assert.deepEqual(info.references, [mid.basename]);
  assert.ok(
    info.sigs.some((s) => verifyNarInfoSig(h.publicKeys(), info, s)),
    'signed by the cache',
  );
  assert.ok(
    info.sigs.some((s) => s.startsWith('upstream-1:')),
    "the upstream's signature is kept",
  );
  // Offered, not committed: the NAR is not here yet.
  assert.deepEqual(h.service.missingPaths(h.main, [top.storePath]), [top.storePath]);
  // A second GET is answered from the recorded offer.
  assert.equal((await get(`${h.url}/main/${top.hashPart}.narinfo`)).status, 200);
  assert.equal(upstream.count(`/${top.hashPart}.narinfo`), 1);
  // HEAD of the NAR stays strict: it is not verified here yet.
  const head = await h.request('HEAD', `/main/nar/${top.fileName}`);
  assert.equal(head.statusCode, 404);
});

test('fetching an offered NAR commits its path with its closure; the next requests are served locally', async (t) => {
  const { leaf, mid, top, cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);

  assert.equal((await get(`${h.url}/main/${top.hashPart}.narinfo`)).status, 200);
  const nar = await get(`${h.url}/main/nar/${top.fileName}`);
  assert.equal(nar.status, 200);
  assert.ok(nar.complete);
  assert.ok(nar.body.equals(top.file), 'the bytes of the upstream file');
  await committed(h, top);
  // The closure invariant: the references were fetched (never asked for by a client) and committed.
  assert.deepEqual(h.service.missingPaths(h.main, [leaf.storePath, mid.storePath, top.storePath]), []);
  const before = upstream.requests.length;
  for (const p of [leaf, mid, top]) {
    const again = await get(`${h.url}/main/nar/${p.fileName}`);
    assert.ok(again.complete && again.body.equals(p.file));
    assert.equal((await get(`${h.url}/main/${p.hashPart}.narinfo`)).status, 200);
    assert.equal(upstream.count(`/nar/${p.fileName}`), 1, `${p.name} was downloaded once`);
  }
  assert.equal(upstream.requests.length, before, 'served locally, the upstream was not asked again');
  const rows = h.db.prepare('SELECT count(*) AS n FROM upstream_offers').get() as { n: number };
  assert.equal(rows.n, 0, 'committed offers are forgotten');
});

test('the first client gets the first bytes of a NAR before the upstream has sent the whole file', async (t) => {
  const { top, cacheDir, upstream } = await closureUpstream(t, { topBytes: 2 * 1024 * 1024 });
  upstream.fault = { kind: 'throttle-nar', bytesPerSecond: 2 * 1024 * 1024 };
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  await get(`${h.url}/main/${top.hashPart}.narinfo`);
  let upstreamDoneAtFirstByte: boolean | undefined;
  const nar = await get(`${h.url}/main/nar/${top.fileName}`, () => {
    upstreamDoneAtFirstByte = upstream.finished.includes(`GET /nar/${top.fileName}`);
  });
  assert.ok(nar.complete && nar.body.equals(top.file));
  assert.equal(upstreamDoneAtFirstByte, false, 'the first byte came while the upstream was still sending');
});

test('20 concurrent clients of one path cause one upstream fetch and all get the same bytes', async (t) => {
  const { top, cacheDir, upstream } = await closureUpstream(t, { topBytes: 1024 * 1024 });
  // Slow enough that every client asks while the one download runs.
  upstream.fault = { kind: 'throttle-nar', bytesPerSecond: 1024 * 1024 };
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  const clients = Array.from({ length: 20 }, async () => {
    const info = await get(`${h.url}/main/${top.hashPart}.narinfo`);
    assert.equal(info.status, 200);
    return get(`${h.url}/main/nar/${parseNarInfo(info.body.toString()).url.slice(4)}`);
  });
  const answers = await Promise.all(clients);
  for (const a of answers) {
    assert.equal(a.status, 200);
    assert.ok(a.complete && a.body.equals(top.file), 'every client got the whole, right file');
  }
  assert.equal(upstream.count(`/${top.hashPart}.narinfo`), 1);
  assert.equal(upstream.count(`/nar/${top.fileName}`), 1);
  await committed(h, top);
});

test('an upstream breaking off mid-NAR fails the transfer visibly, stores nothing; the next retries', async (t) => {
  const { top, cacheDir, upstream } = await closureUpstream(t, { topBytes: 512 * 1024 });
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  await get(`${h.url}/main/${top.hashPart}.narinfo`);
  upstream.fault = { kind: 'break-nar', afterBytes: Math.floor(top.file.length / 2) };
  const broken = await get(`${h.url}/main/nar/${top.fileName}`);
  assert.equal(broken.complete, false, 'the client sees a broken transfer');
  assert.ok(broken.body.length < top.file.length);
  assert.equal(broken.headers['content-length'], String(top.file.length));
  await sleep(100);
  assert.deepEqual(storedNarFiles(h), [], 'no NAR file was kept');
  assert.equal((h.db.prepare('SELECT count(*) AS n FROM nars').get() as { n: number }).n, 0);
  assert.equal(h.service.narinfo(h.main, top.hashPart), undefined);

  upstream.fault = undefined;
  const retried = await get(`${h.url}/main/nar/${top.fileName}`);
  assert.ok(retried.complete && retried.body.equals(top.file));
  assert.equal(upstream.count(`/nar/${top.fileName}`), 2);
  await committed(h, top);
});

test("an upstream's mismatching NAR bytes fail the transfer before its last byte; nothing stored", async (t) => {
  const { top, cacheDir, upstream } = await closureUpstream(t, { topBytes: 256 * 1024 });
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  await get(`${h.url}/main/${top.hashPart}.narinfo`);
  upstream.fault = { kind: 'corrupt-nar' };
  const bad = await get(`${h.url}/main/nar/${top.fileName}`);
  assert.equal(bad.status, 200);
  assert.equal(bad.complete, false, 'never a complete-looking corrupt NAR');
  assert.ok(bad.body.length < top.file.length, `got ${bad.body.length} of ${top.file.length} bytes`);
  await sleep(100);
  assert.deepEqual(storedNarFiles(h), []);
  assert.equal(h.service.narinfo(h.main, top.hashPart), undefined);
  const metrics = await h.request('GET', '/metrics');
  assert.match(metrics.body, new RegExp(`narhub_upstream_errors_total\\{cache="main",upstream="${upstream.url}"\\} 1`));
});

test('a narinfo not signed by a key the upstream is trusted under is a miss', async (t) => {
  const { top, upstream } = await closureUpstream(t);
  const other = await writeCacheDirectory(t, [], 'other-1');
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: other.publicKey }]);
  const res = await get(`${h.url}/main/${top.hashPart}.narinfo`);
  assert.equal(res.status, 404);
  assert.equal(upstream.count(`/${top.hashPart}.narinfo`), 1);
  const metrics = (await h.request('GET', '/metrics')).body;
  assert.match(metrics, /narhub_upstream_errors_total\{cache="main",upstream="[^"]+"\} 1/);
  assert.match(metrics, /narhub_upstream_hits_total\{cache="main",upstream="[^"]+"\} 0/);
});

test('an upstream that is down, or never answers, turns a miss into a 404 within the narinfo timeout', async (t) => {
  const { top, mid, cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }], {
    ...FAST,
    negativeTtlMs: 0,
  });
  upstream.fault = { kind: 'hang' };
  let started = performance.now();
  const hung = await get(`${h.url}/main/${top.hashPart}.narinfo`);
  const hungMs = performance.now() - started;
  assert.equal(hung.status, 404);
  assert.ok(hungMs >= 900 && hungMs < 3_000, `answered after ${Math.round(hungMs)} ms, the timeout is 1000 ms`);

  await upstream.stop();
  started = performance.now();
  const down = await get(`${h.url}/main/${mid.hashPart}.narinfo`);
  assert.equal(down.status, 404);
  assert.ok(performance.now() - started < 3_000);
  const metrics = (await h.request('GET', '/metrics')).body;
  assert.match(metrics, /narhub_upstream_errors_total\{cache="main",upstream="[^"]+"\} 2/);
});

test('a path no upstream has is remembered as missing for negativeTtl, then asked for again', async (t) => {
  const { cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }], {
    ...FAST,
    negativeTtlMs: 600,
  });
  const absent = makePath({ name: 'absent' });
  assert.equal((await get(`${h.url}/main/${absent.hashPart}.narinfo`)).status, 404);
  assert.equal((await get(`${h.url}/main/${absent.hashPart}.narinfo`)).status, 404);
  assert.equal(upstream.count(`/${absent.hashPart}.narinfo`), 1);
  await sleep(700);
  assert.equal((await get(`${h.url}/main/${absent.hashPart}.narinfo`)).status, 404);
  assert.equal(upstream.count(`/${absent.hashPart}.narinfo`), 2);
  const metrics = (await h.request('GET', '/metrics')).body;
  assert.match(metrics, /narhub_upstream_misses_total\{cache="main",upstream="[^"]+"\} 2/);
});

test('upstreams are asked in priority order, and a miss in one falls through to the next', async (t) => {
  const shared = makePath({ name: 'shared', compression: 'xz' });
  const onlyB = makePath({ name: 'only-b', compression: 'none' });
  const dirA = await writeCacheDirectory(t, [shared], 'a-1');
  const dirB = await writeCacheDirectory(t, [shared, onlyB], 'b-1');
  const a = await serveCacheDirectory(t, dirA.dir);
  const b = await serveCacheDirectory(t, dirB.dir);
  const h = await narhubInFront(t, [
    { url: b.url, publicKey: dirB.publicKey, priority: 20 },
    { url: a.url, publicKey: dirA.publicKey, priority: 10 },
  ]);
  const fromA = parseNarInfo((await get(`${h.url}/main/${shared.hashPart}.narinfo`)).body.toString());
  assert.ok(fromA.sigs.some((s) => s.startsWith('a-1:')) && !fromA.sigs.some((s) => s.startsWith('b-1:')));
  assert.equal(b.count(`/${shared.hashPart}.narinfo`), 0, 'the lower priority number answered first');
  const fromB = await get(`${h.url}/main/${onlyB.hashPart}.narinfo`);
  assert.equal(fromB.status, 200);
  assert.deepEqual([a.count(`/${onlyB.hashPart}.narinfo`), b.count(`/${onlyB.hashPart}.narinfo`)], [1, 1]);
  for (const p of [shared, onlyB]) {
    const nar = await get(`${h.url}/main/nar/${p.fileName}`);
    assert.ok(nar.complete && nar.body.equals(p.file), `${p.name} (${p.compression})`);
    await committed(h, p);
  }
});

test('an upload whose references an upstream offers commits after narhub fetched them', async (t) => {
  const { leaf, mid, cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  // Nix checks existence with GETs, which the upstream answers, so it uploads only mid.
  const own = makePath({ name: 'own', references: [mid.basename] });
  const auth = basic(h.tokens.write);
  assert.equal((await putNar(h, own, auth)).statusCode, 204);
  const put = await putNarinfo(h, own.hashPart, own.narinfo(), auth);
  assert.equal(put.statusCode, 204, put.body);
  assert.deepEqual(h.service.missingPaths(h.main, [leaf.storePath, mid.storePath, own.storePath]), []);
});

test('an upload referring to a path no upstream has is still refused', async (t) => {
  const { cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  const nowhere = makePath({ name: 'nowhere' });
  const own = makePath({ name: 'own', references: [nowhere.basename] });
  const auth = basic(h.tokens.write);
  await putNar(h, own, auth);
  const put = await putNarinfo(h, own.hashPart, own.narinfo(), auth);
  assert.equal(put.statusCode, 400);
  assert.match(put.body, /REFERENCE_MISSING/);
});

test('an offered NAR is still fetched by a process started after the one that offered it', async (t) => {
  const { top, cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  assert.equal((await get(`${h.url}/main/${top.hashPart}.narinfo`)).status, 200);
  // A client holds that narinfo (Nix keeps it for a month); narhub restarts.
  const restarted = createCacheService({ db: h.db, store: h.store, keysDir: join(h.dataDir, 'keys'), upstream: FAST });
  t.after(() => restarted.pullThrough.close());
  const nar = await restarted.pullThrough.nar(h.main, top.fileName);
  assert.equal(nar?.kind, 'streaming');
  const chunks: Buffer[] = [];
  for await (const chunk of nar.kind === 'streaming' ? nar.stream : []) chunks.push(chunk as Buffer);
  assert.ok(Buffer.concat(chunks).equals(top.file));
  for (let i = 0; i < 200 && restarted.narinfo(h.main, top.hashPart) === undefined; i++) await sleep(20);
  assert.notEqual(restarted.narinfo(h.main, top.hashPart), undefined);
  assert.equal(upstream.count(`/${top.hashPart}.narinfo`), 1, 'the offer was not asked for again');
});

test('an upstream path whose NAR file, or the NAR it decodes to, is larger than maxNarSize is a miss', async (t) => {
  const { top, cacheDir, upstream } = await closureUpstream(t, { topBytes: 64 * 1024 });
  // 256 KiB of zeros: a zstd file of a few hundred bytes.
  const zeros = makePath({
    name: 'zeros',
    compression: 'zstd',
    tree: { type: 'regular', contents: Buffer.alloc(256 * 1024) },
  });
  const small = makePath({ name: 'small', compression: 'zstd' });
  await addToCacheDirectory(cacheDir.dir, cacheDir.key, zeros);
  await addToCacheDirectory(cacheDir.dir, cacheDir.key, small);
  assert.ok(zeros.file.length < 32 * 1024);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }], {
    ...FAST,
    maxNarSize: 32 * 1024,
  });
  assert.equal((await get(`${h.url}/main/${top.hashPart}.narinfo`)).status, 404);
  assert.equal((await get(`${h.url}/main/${zeros.hashPart}.narinfo`)).status, 404);
  assert.equal(upstream.count(`/nar/${top.fileName}`) + upstream.count(`/nar/${zeros.fileName}`), 0);
  // Under the limit, both ways: offered, fetched and committed.
  assert.equal((await get(`${h.url}/main/${small.hashPart}.narinfo`)).status, 200);
  assert.ok((await get(`${h.url}/main/nar/${small.fileName}`)).complete);
  await committed(h, small);
});

test('/metrics counts per upstream narinfos had and lacked and NAR bytes received; promtool passes', async (t) => {
  const { leaf, mid, top, cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  await get(`${h.url}/main/${top.hashPart}.narinfo`);
  assert.ok((await get(`${h.url}/main/nar/${top.fileName}`)).complete);
  await committed(h, top);
  await get(`${h.url}/main/${makePath({ name: 'absent' }).hashPart}.narinfo`);
  const res = await h.request('GET', '/metrics');
  execFileSync('promtool', ['check', 'metrics'], { input: res.body });
  const value = (name: string) =>
    Number(
      new RegExp(`^narhub_upstream_${name}_total\\{cache="main",upstream="${upstream.url}"\\} (\\d+)$`, 'm').exec(
        res.body,
      )?.[1],
    );
  // top asked by the client, mid and leaf by the fill; one path nobody has.
  assert.equal(value('hits'), 3);
  assert.equal(value('misses'), 1);
  assert.equal(value('bytes'), leaf.file.length + mid.file.length + top.file.length);
  assert.equal(value('errors'), 0);
});
