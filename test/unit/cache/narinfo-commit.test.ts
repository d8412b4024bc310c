// The commit point of every upload (cache/narinfo-commit.ts), against an in-memory SQLite database
// with the real migrations and a real local blob store: what it checks, what it signs and
// records, what a later PUT of the same path may do, and how commits of one path take turns.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { createCacheRegistry } from '../../../src/cache/caches.js';
import { createAccessLog } from '../../../src/cache/access-log.js';
import { createUploadHolds } from '../../../src/cache/upload-holds.js';
import { createGcRepo } from '../../../src/db/gc-repo.js';
import { createNarSync } from '../../../src/cache/nar-sync.js';
import { createPathCommit, narInfoStorageKey } from '../../../src/cache/narinfo-commit.js';
import { createCachesRepo } from '../../../src/db/caches-repo.js';
import { createFilesRepo } from '../../../src/db/files-repo.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { createNarsRepo } from '../../../src/db/nars-repo.js';
import { openDatabase } from '../../../src/db/open.js';
import { createPathsRepo } from '../../../src/db/paths-repo.js';
import { formatNarInfo, parseNarInfo, type NarInfo } from '../../../src/nix/narinfo.js';
import {
  formatPublicKey,
  generateKeyPair,
  parsePublicKey,
  signNarInfo,
  verifyNarInfoSig,
} from '../../../src/nix/signing.js';
import type { BlobStore } from '../../../src/storage/blob-store.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { makePath, type TestPath } from '../../helpers/build-app.js';
import { makeTempDir } from '../../helpers/tmp.js';

async function setup(t: TestContext, wrapStore?: (store: BlobStore) => BlobStore, opts: { fsync?: boolean } = {}) {
  const dir = await makeTempDir(t);
  const db = openDatabase(':memory:');
  migrate(db, defaultMigrationsDir());
  const local = createLocalBlobStore({ root: `${dir}/store`, fsync: opts.fsync ?? false });
  t.after(() => local.close());
  const store = wrapStore ? wrapStore(local) : local;
  const caches = createCachesRepo(db);
  const nars = createNarsRepo(db);
  const paths = createPathsRepo(db);
  const files = createFilesRepo(db);
  const registry = createCacheRegistry({ caches, store, keysDir: `${dir}/keys` });
  const { cache, publicKey } = await registry.create('main', { private: false, priority: 40 });
  const narSync = createNarSync(store);
  const gc = createGcRepo(db);
  const commit = createPathCommit({
    db,
    store,
    nars,
    paths,
    files,
    registry,
    holds: createUploadHolds({ gc }),
    access: createAccessLog({ gc }),
    narSync,
  });
  const ownKey = parsePublicKey(publicKey);

  /** The NAR of `path` as an upload leaves it: pending, with its facts (the bytes are not needed here). */
  function uploaded(path: TestPath, listingKey: string | null = null) {
    const info = path.info();
    nars.putPending({
      cacheId: cache.id,
      fileName: path.fileName,
      storageKey: `main/nar/${path.fileName}`,
      compression: path.compression,
      fileHash: info.fileHash!,
      fileSize: info.fileSize!,
      narHash: info.narHash,
      narSize: info.narSize,
      listingKey,
    });
    return nars.get(cache.id, path.fileName)!;
  }

  async function stored(hashPart: string): Promise<string | undefined> {
    const read = await local.get(narInfoStorageKey('main', hashPart));
    return read ? Buffer.concat(await read.stream.toArray()).toString('utf8') : undefined;
  }

  return { db, cache, commit, nars, paths, files, ownKey, uploaded, stored, local, narSync };
}

test('a path whose NAR was uploaded is committed: signed by the cache, recorded, its NAR made valid', async (t) => {
  const s = await setup(t);
  const path = makePath();
  const nar = s.uploaded(path, 'main/listing/x.ls');
  assert.equal(nar.state, 'pending');

  const result = await s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo());
  assert.equal(result.created, true);
  assert.equal(result.narId, nar.id);
  const info = parseNarInfo(result.narinfo);
  assert.equal(info.storePath, path.storePath);
  assert.ok(
    info.sigs.some((sig) => verifyNarInfoSig([s.ownKey], info, sig)),
    'signed with the cache key',
  );
  assert.equal(s.nars.getById(nar.id)!.state, 'valid');
  assert.equal(s.paths.narinfo(s.cache.id, path.hashPart), result.narinfo);
  assert.equal(await s.stored(path.hashPart), result.narinfo, 'the store holds what the database serves');
  assert.equal(s.files.get('listing', s.cache.id, path.hashPart)?.storageKey, 'main/listing/x.ls');
});

test('the narinfo narhub serves is its own: normalised, with the facts narhub computed', async (t) => {
  const s = await setup(t);
  const dep = makePath({ name: 'dep' });
  s.uploaded(dep);
  await s.commit.commitNarInfo(s.cache, dep.hashPart, dep.narinfo());
  const path = makePath({ references: [dep.basename] });
  s.uploaded(path);
  // FileHash and FileSize are optional in a narinfo; narhub fills them in.
  const text = path.narinfo({ fileHash: undefined, fileSize: undefined });
  const info = parseNarInfo((await s.commit.commitNarInfo(s.cache, path.hashPart, text)).narinfo);
  assert.deepEqual(info.references, [dep.basename]);
  assert.equal(info.compression, 'none');
  assert.equal(info.fileHash, path.info().fileHash);
  assert.equal(info.fileSize, path.file.length);
});

test('every claim is checked against the uploaded NAR, and nothing is recorded when one fails', async (t) => {
  const s = await setup(t);
  const path = makePath();
  s.uploaded(path);
  const other = makePath();
  const cases: [string, Partial<NarInfo> | string, string][] = [
    ['NarHash', { narHash: other.info().narHash }, 'NAR_HASH_MISMATCH'],
    ['NarSize', { narSize: path.nar.length + 1 }, 'NAR_SIZE_MISMATCH'],
    ['FileHash', { fileHash: other.info().fileHash }, 'FILE_HASH_MISMATCH'],
    ['FileSize', { fileSize: path.file.length + 1 }, 'FILE_SIZE_MISMATCH'],
    ['Compression', { compression: 'xz' }, 'COMPRESSION_MISMATCH'],
    ['URL of another cache layout', { url: `../nar/${path.fileName}` }, 'NARINFO_INVALID'],
    ['URL of no upload', { url: `nar/${other.fileName}` }, 'NAR_NOT_UPLOADED'],
    ['a reference not in the cache', { references: [other.basename] }, 'REFERENCE_MISSING'],
    ['a signature that is not one', `${path.narinfo()}Sig: main-1:short\n`, 'NARINFO_PARSE_ERROR'],
    ['StorePath elsewhere', { storePath: other.storePath }, 'NARINFO_INVALID'],
  ];
  for (const [what, change, code] of cases) {
    const text = typeof change === 'string' ? change : path.narinfo(change);
    await assert.rejects(s.commit.commitNarInfo(s.cache, path.hashPart, text), { code }, what);
  }
  assert.equal(s.paths.get(s.cache.id, path.hashPart), undefined);
  assert.equal(s.nars.get(s.cache.id, path.fileName)!.state, 'pending');
  assert.equal(await s.stored(path.hashPart), undefined);
});

test("a signature under the cache's own key name must verify; a self-reference needs no upload", async (t) => {
  const s = await setup(t);
  const path = makePath({ references: [] });
  const self = { ...path, references: [path.basename] };
  s.uploaded(path);
  const forger = generateKeyPair('main-1');
  const forged = signNarInfo(forger.secret, path.info({ references: self.references }));
  await assert.rejects(
    s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo({ references: self.references, sigs: [forged] })),
    { code: 'NARINFO_INVALID', message: /signature by main-1 does not verify/ },
  );
  const result = await s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo({ references: self.references }));
  assert.deepEqual(parseNarInfo(result.narinfo).references, [path.basename]);
});

test('a later PUT of a committed path adds signatures only; a change of content is a conflict', async (t) => {
  const s = await setup(t);
  const path = makePath();
  s.uploaded(path);
  const first = await s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo());

  const again = await s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo());
  assert.deepEqual([again.created, again.narinfo], [false, first.narinfo], 'nothing new: nothing changes');

  const ci = generateKeyPair('ci-1');
  const ciSig = signNarInfo(ci.secret, path.info());
  const added = await s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo({ sigs: [ciSig] }));
  const sigs = parseNarInfo(added.narinfo).sigs;
  assert.ok(sigs.includes(ciSig));
  assert.deepEqual(sigs, [...sigs].sort());
  assert.equal(sigs.length, 2);
  assert.equal(await s.stored(path.hashPart), added.narinfo);
  assert.ok(verifyNarInfoSig([parsePublicKey(formatPublicKey(ci.public))], parseNarInfo(added.narinfo), ciSig));

  const other = makePath();
  await assert.rejects(
    s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo({ narHash: other.info().narHash })),
    { code: 'PATH_CONTENT_CONFLICT' },
  );
  assert.equal(s.paths.narinfo(s.cache.id, path.hashPart), added.narinfo);
});

test('concurrent PUTs of one path take turns, so no signature is lost', async (t) => {
  const s = await setup(t);
  const path = makePath();
  s.uploaded(path);
  const signers = ['a-1', 'b-1', 'c-1', 'd-1'].map((name) => generateKeyPair(name));
  const sigs = signers.map((k) => signNarInfo(k.secret, path.info()));
  const results = await Promise.all(
    sigs.map((sig) => s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo({ sigs: [sig] }))),
  );
  assert.deepEqual(
    results.map((r) => r.created),
    [true, false, false, false],
  );
  const final = parseNarInfo(s.paths.narinfo(s.cache.id, path.hashPart)!);
  for (const sig of sigs) assert.ok(final.sigs.includes(sig));
  assert.equal(await s.stored(path.hashPart), formatNarInfo(final));
});

test('a native upload goes through the same checks: a malformed signature is refused', async (t) => {
  const s = await setup(t);
  const path = makePath();
  s.uploaded(path);
  await assert.rejects(s.commit.commitInfo(s.cache, path.hashPart, path.info({ sigs: ['main-1:short'] })), {
    code: 'NARINFO_INVALID',
    message: /malformed signature/,
  });
  assert.equal((await s.commit.commitInfo(s.cache, path.hashPart, path.info())).created, true);
});

test('precheck refuses what needs no NAR to refuse, before any body is read', async (t) => {
  const s = await setup(t);
  const path = makePath({ references: [makePath().basename] });
  assert.throws(() => s.commit.precheck(s.cache, path.hashPart, path.info()), { code: 'REFERENCE_MISSING' });
  assert.throws(() => s.commit.precheck(s.cache, makePath().hashPart, path.info()), { code: 'NARINFO_INVALID' });
  const clean = makePath();
  assert.doesNotThrow(() => s.commit.precheck(s.cache, clean.hashPart, clean.info()));
});

test('exclusive work on a path holds its commits until it is done', async (t) => {
  const s = await setup(t);
  const path = makePath();
  s.uploaded(path);
  const events: string[] = [];
  let release!: () => void;
  const held = s.commit.exclusive(s.cache, [path.hashPart, path.hashPart], async () => {
    events.push('exclusive start');
    await new Promise<void>((resolve) => (release = resolve));
    events.push('exclusive end');
  });
  await turn();
  const committed = s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo()).then(() => events.push('commit'));
  await turn();
  await turn();
  assert.deepEqual(events, ['exclusive start']);
  release();
  await Promise.all([held, committed]);
  assert.deepEqual(events, ['exclusive start', 'exclusive end', 'commit']);
});

test('a commit that another writer beat leaves the store holding what the database serves', async (t) => {
  let other: (() => void) | undefined;
  const s = await setup(t, (store) => ({
    ...store,
    put: async (key, body, opts) => {
      const info = await store.put(key, body, opts);
      // Another process commits the path between this commit's narinfo write and its transaction.
      other?.();
      other = undefined;
      return info;
    },
  }));
  const path = makePath();
  const nar = s.uploaded(path);
  const theirText = `${path.narinfo()}Sig: someone-1:${'A'.repeat(86)}==\n`;
  other = () =>
    s.paths.insert({
      cacheId: s.cache.id,
      hashPart: path.hashPart,
      name: path.name,
      narId: nar.id,
      deriver: null,
      ca: null,
      system: null,
      narinfo: theirText,
      references: [],
      sigs: [`someone-1:${'A'.repeat(86)}==`],
    });
  const result = await s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo());
  assert.equal(result.created, false);
  assert.equal(s.paths.narinfo(s.cache.id, path.hashPart), theirText);
  assert.equal(await s.stored(path.hashPart), theirText);
});

test("another process's unsynced small NAR is read back: cut short, NAR_NOT_UPLOADED; whole, it commits", async (t) => {
  const s = await setup(t, undefined, { fsync: true });
  const path = makePath();
  const key = `main/nar/${path.fileName}`;
  await s.local.put(key, path.file.subarray(0, path.file.length - 10));
  s.uploaded(path);
  await assert.rejects(s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo()), { code: 'NAR_NOT_UPLOADED' });
  assert.equal(s.paths.get(s.cache.id, path.hashPart), undefined);
  assert.equal(await s.stored(path.hashPart), undefined, 'no narinfo file names the lost NAR');
  assert.equal(s.nars.get(s.cache.id, path.fileName)!.state, 'pending');
  // The bytes again, whole (a re-upload): the next commit verifies them afresh and succeeds.
  await s.local.put(key, path.file);
  const result = await s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo());
  assert.equal(result.created, true);
  assert.equal(s.nars.get(s.cache.id, path.fileName)!.state, 'valid');
});

test("a commit records nothing before its small NAR's sync ends; a failed sync fails it, no narinfo", async (t) => {
  let release: (() => void) | undefined;
  let failing = false;
  const s = await setup(t, (store) => ({
    ...store,
    sync: async () => {
      await new Promise<void>((r) => (release = r));
      if (failing) throw new Error('EIO: fsync failed');
    },
  }));
  const path = makePath();
  s.uploaded(path);
  s.narSync.start(s.cache.id, path.fileName, [`main/nar/${path.fileName}`]);
  const committing = s.commit.commitNarInfo(s.cache, path.hashPart, path.narinfo());
  for (let i = 0; i < 20; i++) await turn();
  assert.equal(s.paths.get(s.cache.id, path.hashPart), undefined, 'not committed while its NAR is not durable');
  assert.equal(s.nars.get(s.cache.id, path.fileName)!.state, 'pending');
  release!();
  assert.equal((await committing).created, true);
  assert.equal(s.nars.get(s.cache.id, path.fileName)!.state, 'valid');

  failing = true;
  const lost = makePath();
  s.uploaded(lost);
  s.narSync.start(s.cache.id, lost.fileName, [`main/nar/${lost.fileName}`]);
  const refused = s.commit.commitNarInfo(s.cache, lost.hashPart, lost.narinfo());
  for (let i = 0; i < 20; i++) await turn();
  release!();
  await assert.rejects(refused, /EIO: fsync failed/);
  assert.equal(s.paths.get(s.cache.id, lost.hashPart), undefined);
  assert.equal(await s.stored(lost.hashPart), undefined, 'its narinfo file was removed');
});
