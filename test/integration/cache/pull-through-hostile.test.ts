// Pull-through against upstreams that fail or lie: server errors, more bytes than the narinfo
// says, a Content-Length that disagrees with it, no FileSize at all, an oversized narinfo. A miss
// stays a miss (404), a NAR transfer fails visibly for its client, and nothing is stored.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UpstreamSettings } from '../../../src/cache/upstream/pull-through.js';
import { formatNarInfo } from '../../../src/nix/narinfo.js';
import { signNarInfo } from '../../../src/nix/signing.js';
import { makePath } from '../../helpers/build-app.js';
import {
  closureUpstream,
  committed,
  FAST,
  get,
  narhubInFront,
  storedNarFiles,
  type Answer,
} from '../../helpers/pull-through.js';
import { serveCacheDirectory, writeCacheDirectory } from '../../helpers/upstream-server.js';

/** A NAR answer that no client could take for the whole, right file. */
function assertBroken(answer: Answer, file: Buffer): void {
  const looksWhole = answer.status === 200 && answer.complete && answer.body.length === file.length;
  assert.ok(!looksWhole, `status ${answer.status}, ${answer.body.length} of ${file.length} bytes, complete`);
  assert.ok(!(answer.status === 200 && answer.complete), `a 200 that ended cleanly (${answer.body.length} bytes)`);
}

test("an upstream's 500 for a narinfo is a 404, counted as an error, and skipped for negativeTtl", async (t) => {
  const { top, mid, cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  upstream.fault = { kind: 'status', status: 500, for: 'narinfo' };
  assert.equal((await get(`${h.url}/main/${top.hashPart}.narinfo`)).status, 404);
  // Another path: the upstream is not asked again while it is remembered as failing.
  assert.equal((await get(`${h.url}/main/${mid.hashPart}.narinfo`)).status, 404);
  assert.equal(upstream.requests.length, 1);
  const metrics = (await h.request('GET', '/metrics')).body;
  assert.match(metrics, /narhub_upstream_errors_total\{cache="main",upstream="[^"]+"\} 1/);
});

test("an upstream's 503 for an offered NAR: the client gets 502, nothing stored, the next one retries", async (t) => {
  const { top, cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  assert.equal((await get(`${h.url}/main/${top.hashPart}.narinfo`)).status, 200);
  upstream.fault = { kind: 'status', status: 503, for: 'nar' };
  const failed = await get(`${h.url}/main/nar/${top.fileName}`);
  // Nothing was sent yet, so the client gets the error itself (Nix retries a 502).
  assert.equal(failed.status, 502);
  assert.match(failed.body.toString(), /^UPSTREAM_FAILED: /);
  await sleep(100);
  assert.deepEqual(storedNarFiles(h), []);
  assert.equal(h.service.narinfo(h.main, top.hashPart), undefined);

  upstream.fault = undefined;
  const retried = await get(`${h.url}/main/nar/${top.fileName}`);
  assert.ok(retried.status === 200 && retried.complete && retried.body.equals(top.file));
  await committed(h, top);
});

test('an upstream sending over FileSize (chunked) fails the transfer before its end; nothing stored', async (t) => {
  const { top, cacheDir, upstream } = await closureUpstream(t, { topBytes: 256 * 1024 });
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  await get(`${h.url}/main/${top.hashPart}.narinfo`);
  upstream.fault = { kind: 'extra-nar', bytes: 1024 * 1024 };
  const answer = await get(`${h.url}/main/nar/${top.fileName}`);
  assertBroken(answer, top.file);
  assert.ok(answer.body.length < top.file.length, `got ${answer.body.length} of ${top.file.length} bytes`);
  await sleep(100);
  assert.deepEqual(storedNarFiles(h), []);
  assert.equal(h.service.narinfo(h.main, top.hashPart), undefined);
});

test('an upstream Content-Length other than the FileSize gives its client a 502 and stores nothing', async (t) => {
  const { top, cacheDir, upstream } = await closureUpstream(t, { topBytes: 64 * 1024 });
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  await get(`${h.url}/main/${top.hashPart}.narinfo`);
  upstream.fault = { kind: 'lying-length', extra: 4096 };
  const answer = await get(`${h.url}/main/nar/${top.fileName}`);
  assert.equal(answer.status, 502, 'refused on the headers, before a byte');
  assert.match(answer.body.toString(), /^UPSTREAM_FAILED: /);
  await sleep(100);
  assert.deepEqual(storedNarFiles(h), []);
  assert.equal(h.service.narinfo(h.main, top.hashPart), undefined);
  const metrics = (await h.request('GET', '/metrics')).body;
  assert.match(metrics, /narhub_upstream_errors_total\{cache="main",upstream="[^"]+"\} 1/);
});

test('a compressed NAR with no FileSize is cut off at maxNarSize when the upstream sends more', async (t) => {
  const cacheDir = await writeCacheDirectory(t, []);
  /** A zstd path in the upstream directory, its narinfo signed but without FileSize. */
  const publishWithoutSize = async (name: string) => {
    const p = makePath({ name, compression: 'zstd' });
    const info = p.info();
    delete info.fileSize;
    await writeFile(join(cacheDir.dir, 'nar', p.fileName), p.file);
    const narinfo = formatNarInfo({ ...info, sigs: [signNarInfo(cacheDir.key, info)] });
    await writeFile(join(cacheDir.dir, `${p.hashPart}.narinfo`), narinfo);
    return p;
  };
  const path = await publishWithoutSize('no-size');
  const upstream = await serveCacheDirectory(t, cacheDir.dir);
  const maxNarSize = 64 * 1024;
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }], { ...FAST, maxNarSize });
  const offered = await get(`${h.url}/main/${path.hashPart}.narinfo`);
  assert.equal(offered.status, 200);
  assert.doesNotMatch(offered.body.toString(), /^FileSize:/m, 'no FileSize is made up');

  // Honest, it streams whole (chunked: its size is unknown) and commits.
  const whole = await get(`${h.url}/main/nar/${path.fileName}`);
  assert.ok(whole.status === 200 && whole.complete && whole.body.equals(path.file));
  await committed(h, path);

  // A second path whose upstream sends far more than maxNarSize: cut off there.
  const endless = await publishWithoutSize('endless');
  assert.equal((await get(`${h.url}/main/${endless.hashPart}.narinfo`)).status, 200);
  upstream.fault = { kind: 'extra-nar', bytes: 4 * maxNarSize };
  const cut = await get(`${h.url}/main/nar/${endless.fileName}`);
  assertBroken(cut, endless.file);
  assert.ok(cut.body.length <= maxNarSize, `the client got ${cut.body.length} bytes, maxNarSize is ${maxNarSize}`);
  await sleep(100);
  assert.deepEqual(storedNarFiles(h), [path.fileName]);
  assert.equal(h.service.narinfo(h.main, endless.hashPart), undefined);
});

test('a narinfo larger than 4 MiB from an upstream is a 404; the same padded to 3 MiB is served', async (t) => {
  const { cacheDir, upstream } = await closureUpstream(t);
  // Unknown fields are ignored (as Nix does), so the padding changes nothing but the size.
  const padded = async (name: string, bytes: number) => {
    const path = makePath({ name });
    const info = path.info();
    const line = 'X-Padding: yyyyyyyyyyyyyyyyyy\n';
    const signed = formatNarInfo({ ...info, sigs: [signNarInfo(cacheDir.key, info)] });
    const text = `${signed}${line.repeat(Math.ceil(bytes / line.length))}`;
    await writeFile(join(cacheDir.dir, `${path.hashPart}.narinfo`), text);
    return path;
  };
  const huge = await padded('huge', 4 * 1024 * 1024 + 1);
  const large = await padded('large', 3 * 1024 * 1024);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  assert.equal((await get(`${h.url}/main/${large.hashPart}.narinfo`)).status, 200);
  assert.equal((await get(`${h.url}/main/${huge.hashPart}.narinfo`)).status, 404);
  assert.equal(upstream.count(`/${huge.hashPart}.narinfo`), 1);
});

/**
 * A narhub in front of an upstream that trickles the NAR of `top` a byte every `everyMs`; the NAR
 * is asked for once, and the answer is checked to be broken, with nothing stored.
 */
async function trickledNar(t: TestContext, settings: Partial<UpstreamSettings>, everyMs: number) {
  const { top, cacheDir, upstream } = await closureUpstream(t, { topBytes: 64 * 1024 });
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }], { ...FAST, ...settings });
  assert.equal((await get(`${h.url}/main/${top.hashPart}.narinfo`)).status, 200);
  upstream.fault = { kind: 'trickle-nar', everyMs };
  const started = Date.now();
  const answer = await get(`${h.url}/main/nar/${top.fileName}`);
  const took = Date.now() - started;
  assertBroken(answer, top.file);
  await sleep(100);
  assert.deepEqual(storedNarFiles(h), []);
  assert.equal((h.db.prepare('SELECT count(*) AS n FROM nars').get() as { n: number }).n, 0);
  assert.equal(h.service.narinfo(h.main, top.hashPart), undefined);
  return { h, top, upstream, answer, took };
}

const TRICKLE_CUT =
  'an upstream that trickles a NAR (a byte every 200 ms, never silent for narTimeout) is cut under narMinRate: ' +
  'the client sees a broken transfer, nothing is stored, a later request succeeds';
test(TRICKLE_CUT, {
  timeout: 30_000,
}, async (t) => {
  const { h, top, upstream, answer, took } = await trickledNar(t, { narTimeoutMs: 1_000, narMinRate: 1024 }, 200);
  assert.ok(answer.body.length < 100, `${answer.body.length} bytes went out`);
  // One window of 1 s, with slack for a loaded machine; the trickle alone would take 3.6 hours.
  assert.ok(took < 5_000, `cut after ${took} ms`);
  const metrics = (await h.request('GET', '/metrics')).body;
  assert.match(metrics, /narhub_upstream_errors_total\{cache="main",upstream="[^"]+"\} 1/);

  upstream.fault = undefined;
  const retried = await get(`${h.url}/main/nar/${top.fileName}`);
  assert.ok(retried.status === 200 && retried.complete && retried.body.equals(top.file));
  await committed(h, top);
});

test('a download above narMinRate still ends at narMaxTime: its client sees a broken transfer, nothing is stored', {
  timeout: 30_000,
}, async (t) => {
  const { took } = await trickledNar(t, { narMinRate: 0, narMaxTimeMs: 1_500 }, 100);
  assert.ok(took >= 1_400 && took < 6_000, `cut after ${took} ms`);
});
