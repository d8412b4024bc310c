// Paths fetched from upstreams are ordinary paths for GC: retention and quota apply to them, and
// GC running while narhub fetches a closure never breaks its commit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { makePath } from '../../helpers/build-app.js';
import { serveCacheDirectory, writeCacheDirectory } from '../../helpers/upstream-server.js';
import { closureUpstream, committed, get, narhubInFront, storedNarFiles } from '../../helpers/pull-through.js';

const DAY = 86_400_000;
const GRACE = { pendingGraceMs: DAY, supersededGraceMs: DAY };

test('fetched paths are removed by retention like uploaded ones, and fetched again on the next request', async (t) => {
  const { leaf, mid, top, cacheDir, upstream } = await closureUpstream(t);
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  await get(`${h.url}/main/${top.hashPart}.narinfo`);
  assert.ok((await get(`${h.url}/main/nar/${top.fileName}`)).complete);
  await committed(h, top);

  await h.service.registry.update('main', { retention: 86_400 });
  assert.equal((await h.service.runGc(GRACE)).caches[0]!.pathsRemoved, 0, 'just fetched: kept');
  h.service.flushAccesses();
  h.db.prepare('UPDATE store_paths SET accessed_at = ?').run(Date.now() - 2 * DAY);
  const run = (await h.service.runGc(GRACE)).caches[0]!;
  assert.deepEqual(run.paths.map((p) => p.storePath).sort(), [leaf, mid, top].map((p) => p.storePath).sort());
  assert.deepEqual(storedNarFiles(h), []);

  // Gone here, still upstream: the next client gets it through narhub again. (After the narinfo
  // memo's second: GC deletes beside the memoized repository, cache/narinfo-memo.ts.)
  await sleep(1_100);
  assert.equal((await get(`${h.url}/main/${top.hashPart}.narinfo`)).status, 200);
  const again = await get(`${h.url}/main/nar/${top.fileName}`);
  assert.ok(again.complete && again.body.equals(top.file));
  await committed(h, top);
  assert.equal(upstream.count(`/nar/${top.fileName}`), 2);
});

test('GC with quota 0 during a fetch keeps a fetched reference until its referrer is committed', async (t) => {
  // top refers to a (small: committed at once) and b (slow): for half a second a is committed
  // with nothing visible referring to it, which a quota of 0 would remove but for the fill's hold.
  const a = makePath({ name: 'a', compression: 'zstd' });
  const b = makePath({ name: 'b', tree: { type: 'regular', contents: randomBytes(512 * 1024) } });
  const top = makePath({ name: 'top', compression: 'zstd', references: [a.basename, b.basename] });
  const cacheDir = await writeCacheDirectory(t, [a, b, top]);
  const upstream = await serveCacheDirectory(t, cacheDir.dir);
  upstream.fault = { kind: 'throttle-nar', bytesPerSecond: 1024 * 1024 };
  const h = await narhubInFront(t, [{ url: upstream.url, publicKey: cacheDir.publicKey }]);
  await h.service.registry.update('main', { quota: 0 });
  let collecting = true;
  let removed = 0;
  const gc = (async () => {
    while (collecting) {
      removed += (await h.service.runGc(GRACE)).caches[0]!.pathsRemoved;
      await sleep(1);
    }
  })();
  await get(`${h.url}/main/${top.hashPart}.narinfo`);
  const nar = await get(`${h.url}/main/nar/${top.fileName}`);
  assert.ok(nar.complete && nar.body.equals(top.file));
  // The fill ends by forgetting the offer, and only once the path was committed.
  const offers = () => (h.db.prepare('SELECT count(*) AS n FROM upstream_offers').get() as { n: number }).n;
  for (let i = 0; i < 250 && offers() > 0; i++) await sleep(20);
  collecting = false;
  await gc;
  assert.equal(offers(), 0, 'a, b and top were committed (a failed fill keeps its offer)');
  // Once committed and released, GC removed them all: the quota applies to fetched paths.
  assert.equal(removed + (await h.service.runGc(GRACE)).caches[0]!.pathsRemoved, 3);
});
