// reindex in-process over a local store: every kind of file comes back exactly as served before,
// from storage alone, into a fresh database.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { reindex, type ReindexSummary } from '../../../src/cache/reindex.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { buildApp } from '../../../src/http/app.js';
import { formatNarInfo, parseNarInfo } from '../../../src/nix/narinfo.js';
import { generateKeyPair, parseSecretKey, signNarInfo } from '../../../src/nix/signing.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { basic, buildTestApp, makePath, randomHashPart, upload, type TestApp } from '../../helpers/build-app.js';
import { removeTree } from '../../helpers/tmp.js';

/** A second narhub over the same store and keys, with an empty database, filled by reindex. */
async function rebuilt(t: TestContext, h: TestApp, opts: { public?: boolean } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'narhub-reindex-'));
  const db = openDatabase(join(dir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: h.storeRoot, fsync: false });
  const service = createCacheService({ db, store, keysDir: join(h.dataDir, 'keys') });
  const app = await buildApp({ service, maxNarSize: 1 << 26, maxSmallFileSize: 1 << 20 });
  t.after(async () => {
    await app.close();
    await store.close();
    db.close();
    await removeTree(dir);
  });
  const warnings: string[] = [];
  const run = () =>
    reindex(
      { db, store, keysDir: join(h.dataDir, 'keys') },
      {
        settingsFor: (name) => (opts.public && name === 'main' ? { private: false } : undefined),
        warn: (m) => void warnings.push(m),
      },
    );
  return { db, service, app, warnings, run };
}

function byCache(summaries: ReindexSummary[]): Record<string, ReindexSummary> {
  return Object.fromEntries(summaries.map((s) => [s.cache, s]));
}

const drv = (name: string) => `${randomHashPart()}-${name}.drv`;

test('reindex restores paths, keys, logs, listings, realisations and debuginfo as they were served', async (t) => {
  const h = await buildTestApp(t, { caches: [{ name: 'team', private: true, priority: 30 }] });
  const leaf = makePath({ name: 'leaf', compression: 'zstd' });
  const top = makePath({ name: 'top', compression: 'xz', references: [leaf.basename], deriver: drv('top') });
  await upload(h, leaf);
  await upload(h, top);
  const teamPath = makePath({ name: 'team-pkg', compression: 'gzip' });
  await upload(h, teamPath, { cache: 'team' });

  const write = basic(h.tokens.write);
  const logs = { plain: drv('plain'), br: drv('br'), gz: drv('gz') };
  const text = (label: string) => Buffer.from(`building ${label}\n${'line\n'.repeat(200)}`);
  const puts: [string, Buffer, Record<string, string>][] = [
    [`/main/log/${logs.plain}`, text('plain'), { 'content-type': 'text/plain; charset=utf-8' }],
    [
      `/main/log/${logs.br}`,
      brotliCompressSync(text('br')),
      { 'content-type': 'text/plain; charset=utf-8', 'content-encoding': 'br' },
    ],
    [
      `/main/log/${logs.gz}`,
      gzipSync(text('gz')),
      { 'content-type': 'text/plain; charset=utf-8', 'content-encoding': 'gzip' },
    ],
    [
      `/main/realisations/sha256:${randomBytes(32).toString('hex')}!out.doi`,
      Buffer.from(JSON.stringify({ outPath: leaf.basename, signatures: [] })),
      {},
    ],
    [`/main/build-trace-v2/${drv('bt')}/out.doi`, Buffer.from(JSON.stringify({ outPath: top.basename })), {}],
    [
      `/main/debuginfo/${randomBytes(20).toString('hex')}.debug`,
      Buffer.from(JSON.stringify({ archive: `../${leaf.narUrl}`, member: 'lib/x.debug' })),
      {},
    ],
  ];
  for (const [url, body, headers] of puts) {
    const res = await h.request('PUT', url, { body, headers: { ...write, ...headers } });
    assert.equal(res.statusCode, 204, `PUT ${url}: ${res.body}`);
  }
  // A client's listing for a path not yet committed stays a client listing.
  const pending = makePath({ name: 'pending' });
  assert.equal(
    (
      await h.request('PUT', `/main/${pending.hashPart}.ls`, {
        body: JSON.stringify({ version: 1, root: { type: 'regular' } }),
        headers: write,
      })
    ).statusCode,
    204,
  );

  const urls = [
    ...[leaf, top].flatMap((p) => [`/main/${p.hashPart}.narinfo`, `/main/${p.narUrl}`, `/main/${p.hashPart}.ls`]),
    `/team/${teamPath.hashPart}.narinfo`,
    `/team/${teamPath.narUrl}`,
    ...puts.map(([url]) => url),
  ];
  const snapshot = async (
    request: (url: string) => Promise<{ statusCode: number; body: string; headers: Record<string, unknown> }>,
  ) => {
    const out: Record<string, unknown> = {};
    for (const url of urls) {
      const res = await request(url);
      out[url] = {
        status: res.statusCode,
        body: res.body,
        encoding: res.headers['content-encoding'],
        type: res.headers['content-type'],
      };
    }
    return out;
  };
  const before = await snapshot((url) =>
    h.request('GET', url, { headers: basic(h.tokensFor[url.split('/')[1]!]!.read) }),
  );

  const fresh = await rebuilt(t, h);
  const summaries = byCache(await fresh.run());
  assert.deepEqual(Object.keys(summaries).sort(), ['main', 'team']);
  assert.deepEqual(summaries.main!.paths, { added: 2, updated: 0, unchanged: 0, skipped: 0 });
  assert.equal(summaries.main!.logs, 3);
  assert.equal(summaries.main!.listings, 2);
  assert.equal(summaries.main!.realisations, 2);
  assert.equal(summaries.main!.debuginfo, 1);
  assert.equal(summaries.main!.unreferencedNars, 0);
  assert.deepEqual(summaries.main!.keys, ['main-1']);
  assert.deepEqual(summaries.team!.keys, ['team-1']);
  assert.equal(summaries.team!.private, true);
  assert.equal(fresh.service.registry.require('team').priority, 30, 'priority from nix-cache-info');
  assert.deepEqual(fresh.service.registry.info('main').publicKeys, h.service.registry.info('main').publicKeys);

  const read = (cache: string) => basic(fresh.service.tokens.create({ cachePattern: cache, permission: 'read' }).token);
  const auth = { main: read('main'), team: read('team') };
  const after = await snapshot((url) =>
    fresh.app.inject({ method: 'GET', url, headers: auth[url.split('/')[1] as 'main' | 'team'] }),
  );
  assert.deepEqual(after, before);
  // HEAD of a NAR is 200 again: the NAR rows are valid.
  assert.equal(
    (await fresh.app.inject({ method: 'HEAD', url: `/main/${top.narUrl}`, headers: auth.main })).statusCode,
    200,
  );

  // Idempotent.
  const again = byCache(await fresh.run());
  assert.deepEqual(again.main!.paths, { added: 0, updated: 0, unchanged: 2, skipped: 0 });
  assert.equal(again.main!.logs, 3);
  assert.deepEqual(
    fresh.warnings.filter((w) => !w.includes('recreated as a private cache')),
    [],
  );
});

test('reindex takes signatures added in storage, and skips narinfos the cache did not sign', async (t) => {
  const h = await buildTestApp(t);
  const a = makePath({ name: 'a' });
  const b = makePath({ name: 'b' });
  await upload(h, a);
  await upload(h, b);
  const fresh = await rebuilt(t, h, { public: true });
  byCache(await fresh.run());

  // Storage is written before the database: a narinfo there with one more signature is newer.
  const file = join(h.storeRoot, 'main', `${a.hashPart}.narinfo`);
  const info = parseNarInfo(readFileSync(file, 'utf8'));
  const other = generateKeyPair('other-1').secret;
  info.sigs = [...info.sigs, signNarInfo(other, info)].sort();
  writeFileSync(file, formatNarInfo(info));
  // A narinfo for a present NAR but signed by nobody this cache knows.
  const forged = parseNarInfo(readFileSync(join(h.storeRoot, 'main', `${b.hashPart}.narinfo`), 'utf8'));
  const forgedHash = randomHashPart();
  forged.storePath = `/nix/store/${forgedHash}-forged`;
  forged.sigs = [signNarInfo(other, forged)];
  writeFileSync(join(h.storeRoot, 'main', `${forgedHash}.narinfo`), formatNarInfo(forged));

  const summary = byCache(await fresh.run()).main!;
  assert.deepEqual(summary.paths, { added: 0, updated: 1, unchanged: 1, skipped: 1 });
  assert.equal(summary.private, false);
  assert.ok(
    fresh.warnings.some((w) => w.includes(`${forgedHash}.narinfo skipped: it carries no valid signature by main-1`)),
    fresh.warnings.join('\n'),
  );
  const served = await fresh.app.inject({ method: 'GET', url: `/main/${a.hashPart}.narinfo` });
  assert.equal(served.body, formatNarInfo(info));
  assert.equal((await fresh.app.inject({ method: 'GET', url: `/main/${forgedHash}.narinfo` })).statusCode, 404);
  // The key file is what made main-1 trusted: it is the one narhub wrote.
  assert.equal(parseSecretKey(readFileSync(join(h.dataDir, 'keys', 'main-1.secret'), 'utf8')).name, 'main-1');
});
