import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { createCacheRegistry } from '../../../src/cache/caches.js';
import { createCachesRepo } from '../../../src/db/caches-repo.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';

test('cache rows: looked up once per second, misses never kept, ensure seen at once', async (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  const dir = mkdtempSync(join(tmpdir(), 'narhub-cache-rows-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = new Sqlite(':memory:');
  t.after(() => db.close());
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dir, 'store'), fsync: false });
  // Counts the database reads of this registry's rows.
  const repo = createCachesRepo(db);
  const reads: string[] = [];
  const counted = { ...repo, get: (name: string) => (reads.push(name), repo.get(name)) };
  const registry = createCacheRegistry({ caches: counted, store, keysDir: join(dir, 'keys') });
  // Another process (the admin CLI) writes through its own connection.
  const other = createCacheRegistry({ caches: createCachesRepo(db), store, keysDir: join(dir, 'keys') });

  assert.equal(registry.get('main'), undefined);
  assert.equal(registry.get('main'), undefined);
  assert.equal(reads.length, 2, 'a miss is read from the database every time');
  await other.create('main', { private: false, priority: 40 });
  assert.equal(registry.get('main')?.private, false, 'a cache created elsewhere serves at once');

  // A hit is reused for a second: another process's change shows only after that.
  reads.length = 0;
  db.prepare(`UPDATE caches SET private = 1 WHERE name = 'main'`).run();
  for (let i = 0; i < 100; i++) assert.equal(registry.get('main')?.private, false);
  t.mock.timers.tick(999);
  assert.equal(registry.get('main')?.private, false);
  assert.equal(reads.length, 0, 'no read within the second');
  t.mock.timers.tick(1);
  assert.equal(registry.get('main')?.private, true, 'the change is seen once the second is over');
  assert.equal(reads.length, 1);
  for (let i = 0; i < 100; i++) registry.get('main');
  assert.equal(reads.length, 1, 'then reused for another second');
  db.prepare(`UPDATE caches SET private = 0 WHERE name = 'main'`).run();

  await registry.ensure('main', { private: true, priority: 40 });
  assert.equal(registry.get('main')?.private, true, 'ensure in this process is seen at once');
  assert.throws(() => {
    (registry.get('main') as { private: boolean }).private = false;
  }, 'rows handed out are frozen');
});
