// GC of a cache through the domain, over a real app (SQLite, local store): retention, quota,
// pins, the closure invariant, orphans, logs, holds of uploads in flight.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { basic, buildTestApp, makePath, type TestApp, type TestPath, upload } from '../../helpers/build-app.js';

const DAY = 86_400_000;
const GRACE = { pendingGraceMs: DAY, supersededGraceMs: DAY };

/** Sets when paths were last accessed, as if that long ago. */
function age(h: TestApp, paths: TestPath[], msAgo: number): void {
  h.service.flushAccesses();
  const stmt = h.db.prepare('UPDATE store_paths SET accessed_at = ? WHERE hash_part = ?');
  for (const p of paths) stmt.run(Date.now() - msAgo, p.hashPart);
}

/** Every visible narinfo's references are visible too, and its NAR is served. */
async function assertClosed(h: TestApp): Promise<void> {
  const rows = h.db.prepare('SELECT id, hash_part FROM store_paths').all() as { id: number; hash_part: string }[];
  for (const r of rows) {
    const refs = h.db.prepare('SELECT reference FROM path_references WHERE path_id = ?').all(r.id) as {
      reference: string;
    }[];
    for (const { reference } of refs) {
      const res = await h.request('GET', `/main/${reference.slice(0, 32)}.narinfo`);
      assert.equal(res.statusCode, 200, `${r.hash_part} refers to ${reference}, which is gone`);
    }
    const narinfo = (await h.request('GET', `/main/${r.hash_part}.narinfo`)).body;
    const url = /^URL: (.*)$/m.exec(narinfo)![1]!;
    assert.equal((await h.request('GET', `/main/${url}`)).statusCode, 200, `NAR of ${r.hash_part}`);
  }
}

/** leaf <- mid <- top */
async function chain(h: TestApp, label: string): Promise<[TestPath, TestPath, TestPath]> {
  const leaf = makePath({ name: `${label}-leaf`, compression: 'xz' });
  const mid = makePath({ name: `${label}-mid`, references: [leaf.basename] });
  const top = makePath({ name: `${label}-top`, compression: 'zstd', references: [mid.basename, leaf.basename] });
  for (const p of [leaf, mid, top]) await upload(h, p);
  return [leaf, mid, top];
}

/** 200 when the path is visible, else 404: read from the database, so it is not an access. */
const status = async (h: TestApp, p: TestPath) =>
  h.db.prepare('SELECT 1 FROM store_paths WHERE hash_part = ?').get(p.hashPart) === undefined ? 404 : 200;

test('a cache without a policy keeps everything, however old', async (t) => {
  const h = await buildTestApp(t);
  const paths = await chain(h, 'nopolicy');
  age(h, paths, 1000 * DAY);
  const run = await h.service.runGc(GRACE);
  assert.equal(run.caches[0]!.pathsRemoved, 0);
  for (const p of paths) assert.equal(await status(h, p), 200);
});

test('retention removes an unused closure with its blobs, never a path a recent one refers to', async (t) => {
  const h = await buildTestApp(t);
  await h.service.registry.update('main', { retention: 30 * 86_400 });
  const [oldLeaf, oldMid, oldTop] = await chain(h, 'old');
  const [leaf, mid, top] = await chain(h, 'fresh');
  age(h, [oldLeaf, oldMid, oldTop, leaf, mid], 60 * DAY);
  // `fresh-top` was just read: its closure stays although leaf and mid were not read for 60 days.
  assert.equal((await h.request('GET', `/main/${top.hashPart}.narinfo`)).statusCode, 200);

  const dry = await h.service.runGc({ ...GRACE, dryRun: true });
  const report = dry.caches[0]!;
  assert.deepEqual(
    report.paths.map((p) => p.storePath).sort(),
    [oldLeaf, oldMid, oldTop].map((p) => p.storePath).sort(),
  );
  assert.equal(report.bytesFreed, oldLeaf.file.length + oldMid.file.length + oldTop.file.length);
  assert.equal(await status(h, oldTop), 200, 'a dry run removes nothing');

  const run = (await h.service.runGc(GRACE)).caches[0]!;
  // Referrers go first.
  assert.deepEqual(
    run.paths.map((p) => p.storePath),
    [oldTop, oldMid, oldLeaf].map((p) => p.storePath),
  );
  assert.equal(run.bytesFreed, report.bytesFreed);
  for (const p of [oldLeaf, oldMid, oldTop]) {
    assert.equal(await status(h, p), 404);
    assert.equal((await h.request('GET', `/main/${p.narUrl}`)).statusCode, 404);
    assert.equal(existsSync(join(h.storeRoot, 'main', p.narUrl)), false, 'NAR file deleted');
    assert.equal(existsSync(join(h.storeRoot, 'main', `${p.hashPart}.narinfo`)), false, 'narinfo file deleted');
    assert.equal(existsSync(join(h.storeRoot, 'main', 'listing', `${p.fileName}.ls`)), false, 'listing deleted');
  }
  for (const p of [leaf, mid, top]) assert.equal(await status(h, p), 200);
  await assertClosed(h);
  // Uploading a removed path again works.
  await upload(h, oldLeaf);
  assert.equal(await status(h, oldLeaf), 200);
});

test('a pin keeps its closure until it expires or is removed', async (t) => {
  const h = await buildTestApp(t);
  await h.service.registry.update('main', { retention: 86_400 });
  const paths = await chain(h, 'pinned');
  const [, mid, top] = paths;
  h.service.pins.add(h.main, mid.storePath, { name: 'release' });
  h.service.pins.add(h.main, top.storePath, { name: 'short', expiresAt: Date.now() - 1 });
  assert.throws(() => h.service.pins.add(h.main, top.storePath, { name: 'release' }), /PIN_EXISTS|already has a pin/);
  assert.throws(() => h.service.pins.add(h.main, '/nix/store/00000000000000000000000000000000-x'), /not in cache/);
  age(h, paths, 10 * DAY);
  const run = (await h.service.runGc(GRACE)).caches[0]!;
  // The expired pin protects nothing: top goes; mid (pinned) and leaf (its closure) stay.
  assert.deepEqual(
    run.paths.map((p) => p.storePath),
    [top.storePath],
  );
  assert.equal(await status(h, mid), 200);
  assert.equal(await status(h, paths[0]), 200);
  assert.deepEqual(
    h.service.pins.list(h.main).map((p) => [p.name, p.expired]),
    [
      ['release', false],
      ['short', true],
    ],
  );
  h.service.pins.remove(h.main, 'release');
  assert.deepEqual((await h.service.runGc(GRACE)).caches[0]!.pathsRemoved, 2);
  await assertClosed(h);
});

test('the quota removes the least recently accessed closures until the NARs fit', async (t) => {
  const h = await buildTestApp(t);
  const a = await chain(h, 'a');
  const b = await chain(h, 'b');
  const c = await chain(h, 'c');
  age(h, a, 3 * DAY);
  age(h, b, 2 * DAY);
  age(h, c, 1 * DAY);
  const size = (ps: TestPath[]) => ps.reduce((s, p) => s + p.file.length, 0);
  await h.service.registry.update('main', { quota: size(b) + size(c) });
  const run = (await h.service.runGc(GRACE)).caches[0]!;
  assert.deepEqual(run.paths.map((p) => p.storePath).sort(), a.map((p) => p.storePath).sort());
  assert.equal(run.bytesAfter, size(b) + size(c));
  // One byte less and b goes too.
  await h.service.registry.update('main', { quota: size(b) + size(c) - 1 });
  const again = (await h.service.runGc(GRACE)).caches[0]!;
  assert.deepEqual(again.paths.map((p) => p.storePath).sort(), b.map((p) => p.storePath).sort());
  for (const p of c) assert.equal(await status(h, p), 200);
  await assertClosed(h);
});

test('GC leaves alone the references of an upload in flight, and a commit racing it succeeds', async (t) => {
  const h = await buildTestApp(t);
  await h.service.registry.update('main', { retention: 86_400 });
  const [leaf, mid, top] = await chain(h, 'held');
  age(h, [leaf, mid, top], 10 * DAY);
  // A native upload of a new path referring to `top` has started (its metadata is read): it
  // holds top and so its closure.
  const next = makePath({ name: 'next', references: [top.basename] });
  const release = holdFor(h, next);
  const run = (await h.service.runGc(GRACE)).caches[0]!;
  assert.equal(run.pathsRemoved, 0, JSON.stringify(run.paths));
  await upload(h, next);
  release();
  assert.equal(await status(h, next), 200);
  await assertClosed(h);
});

/** Holds what a commit of `p` holds, as the native upload does from its metadata line on. */
function holdFor(h: TestApp, p: TestPath): () => void {
  const ins = h.db.prepare('INSERT INTO gc_holds (holder, cache_id, hash_part, expires_at) VALUES (?, ?, ?, ?)');
  for (const ref of p.references) ins.run('test', h.main.id, ref.slice(0, 32), Date.now() + DAY);
  return () => h.db.prepare("DELETE FROM gc_holds WHERE holder = 'test'").run();
}

test('a path planned for removal stays if something refers to it by the time it would go', async (t) => {
  const h = await buildTestApp(t);
  await h.service.registry.update('main', { retention: 86_400 });
  const old = makePath({ name: 'old' });
  await upload(h, old);
  age(h, [old], 10 * DAY);
  // Plan, then commit a path referring to `old` before the removal's transaction runs: the
  // removal re-checks inside its transaction and keeps it.
  const orig = h.db.transaction.bind(h.db);
  let raced = false;
  (h.db as { transaction: typeof h.db.transaction }).transaction = ((fn: (...a: unknown[]) => unknown) => {
    const tx = orig(fn);
    const race = () => {
      if (!raced && fn.toString().includes('removePath')) {
        raced = true;
        const ref = makePath({ name: 'referrer', references: [old.basename] });
        // Commit synchronously enough: insert its rows as a commit would.
        const narId = (
          h.db.prepare('SELECT nar_id FROM store_paths WHERE hash_part = ?').get(old.hashPart) as { nar_id: number }
        ).nar_id;
        const id = h.db
          .prepare(
            'INSERT INTO store_paths (cache_id, hash_part, name, nar_id, narinfo, created_at, updated_at, ' +
              "accessed_at) VALUES (?, ?, ?, ?, '', 0, 0, ?)",
          )
          .run(h.main.id, ref.hashPart, ref.name, narId, Date.now()).lastInsertRowid;
        h.db.prepare('INSERT INTO path_references (path_id, reference) VALUES (?, ?)').run(id, old.basename);
      }
    };
    // GC's removal runs as an IMMEDIATE transaction; either way the racing commit comes first.
    return Object.assign(
      (...args: unknown[]) => {
        race();
        return tx(...args);
      },
      {
        immediate: (...args: unknown[]) => {
          race();
          return tx.immediate(...args);
        },
      },
    ) as unknown as typeof tx;
  }) as typeof h.db.transaction;
  const run = (await h.service.runGc(GRACE)).caches[0]!;
  assert.ok(raced);
  assert.equal(run.pathsRemoved, 0);
  assert.equal(run.kept.referenced, 1);
  assert.equal(await status(h, old), 200);
});

test('a build log goes with the last visible output of its derivation; orphans after their grace period', async (t) => {
  const h = await buildTestApp(t);
  await h.service.registry.update('main', { retention: 86_400 });
  const drv = '0000000000000000000000000000000a-thing.drv';
  const out = makePath({ name: 'thing', deriver: drv });
  const dev = makePath({ name: 'thing-dev', deriver: drv });
  await upload(h, out);
  await upload(h, dev);
  const w = basic(h.tokens.write);
  assert.equal((await h.request('PUT', `/main/log/${drv}`, { body: 'built\n', headers: w })).statusCode, 204);
  age(h, [out], 10 * DAY);
  let run = (await h.service.runGc(GRACE)).caches[0]!;
  assert.equal(run.pathsRemoved, 1);
  assert.equal(run.logsRemoved, 0, 'the derivation still has a visible output');
  assert.equal((await h.request('GET', `/main/log/${drv}`)).statusCode, 200);
  age(h, [dev], 10 * DAY);
  run = (await h.service.runGc(GRACE)).caches[0]!;
  assert.equal(run.logsRemoved, 1);
  assert.equal((await h.request('GET', `/main/log/${drv}`)).statusCode, 404);

  // A blob no row describes: seen, kept during the grace period, then removed.
  mkdirSync(join(h.storeRoot, 'main', 'nar'), { recursive: true });
  const orphan = join(h.storeRoot, 'main', 'nar', '1111111111111111111111111111111111111111111111111111.nar.xz');
  writeFileSync(orphan, 'junk');
  run = (await h.service.runGc(GRACE)).caches[0]!;
  assert.equal(run.orphansFound, 1);
  assert.equal(run.orphansRemoved, 0);
  assert.ok(existsSync(orphan));
  run = (await h.service.runGc({ ...GRACE, pendingGraceMs: 0 })).caches[0]!;
  assert.equal(run.orphansRemoved, 1);
  assert.equal(existsSync(orphan), false);
});

test('reads count as accesses: a narinfo GET and a NAR GET keep a path past the retention', async (t) => {
  const h = await buildTestApp(t);
  await h.service.registry.update('main', { retention: 86_400 });
  const a = makePath({ name: 'read-narinfo' });
  const b = makePath({ name: 'read-nar' });
  const c = makePath({ name: 'unread' });
  for (const p of [a, b, c]) await upload(h, p);
  age(h, [a, b, c], 10 * DAY);
  assert.equal((await h.request('GET', `/main/${a.hashPart}.narinfo`)).statusCode, 200);
  assert.equal((await h.request('GET', `/main/${b.narUrl}`)).statusCode, 200);
  const run = (await h.service.runGc(GRACE)).caches[0]!;
  assert.deepEqual(
    run.paths.map((p) => p.storePath),
    [c.storePath],
  );
});
