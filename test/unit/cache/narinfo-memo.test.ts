import { test } from 'node:test';
import assert from 'node:assert/strict';
import Sqlite from 'better-sqlite3';
import { memoizeNarinfos, NARINFO_MEMO_MS } from '../../../src/cache/narinfo-memo.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { createPathsRepo, type NewPath } from '../../../src/db/paths-repo.js';

function setup(now: () => number) {
  const db = new Sqlite(':memory:');
  db.pragma('foreign_keys = ON');
  migrate(db, defaultMigrationsDir());
  const cacheId = Number(
    db.prepare("INSERT INTO caches (name, private, priority, created_at) VALUES ('main', 0, 40, 0)").run()
      .lastInsertRowid,
  );
  const narId = Number(
    db
      .prepare(
        `INSERT INTO nars (cache_id, file_name, storage_key, compression, file_hash, file_size, nar_hash, nar_size,
           state, created_at)
         VALUES (?, 'x.nar', 'main/nar/x.nar', 'none', 'sha256:1', 1, 'sha256:2', 1, 'valid', 0)`,
      )
      .run(cacheId).lastInsertRowid,
  );
  const raw = createPathsRepo(db);
  const paths = memoizeNarinfos(raw, now);
  const path = (hashPart: string, narinfo: string): NewPath => ({
    cacheId,
    hashPart,
    name: 'p',
    narId,
    deriver: null,
    ca: null,
    system: null,
    narinfo,
    references: [],
    sigs: [],
  });
  return { db, raw, paths, cacheId, path };
}

test('narinfo memo: hits are kept, misses are not, writes forget', () => {
  let t = 0;
  const h = setup(() => t);
  const hash = 'a'.repeat(32);
  assert.equal(h.paths.narinfo(h.cacheId, hash), undefined);
  // A miss is not remembered: the path serves as soon as it is committed.
  const id = h.paths.insert(h.path(hash, 'one\n'));
  assert.equal(h.paths.narinfo(h.cacheId, hash), 'one\n');
  // Another connection's change is not seen until the memo expires...
  h.db.prepare('UPDATE store_paths SET narinfo = ? WHERE id = ?').run('two\n', id);
  assert.equal(h.paths.narinfo(h.cacheId, hash), 'one\n');
  t += NARINFO_MEMO_MS;
  assert.equal(h.paths.narinfo(h.cacheId, hash), 'two\n');
  // ...but a write through the repository is seen at once.
  h.paths.addSignatures(id, ['k:sig'], 'three\n');
  assert.equal(h.paths.narinfo(h.cacheId, hash), 'three\n');
  h.paths.switchNar(id, h.raw.get(h.cacheId, hash)!.narId, 'four\n');
  assert.equal(h.paths.narinfo(h.cacheId, hash), 'four\n');
  h.db.close();
});
