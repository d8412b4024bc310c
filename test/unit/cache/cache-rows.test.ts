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
  const dir = mkdtempSync(join(tmpdir(), 'narhub-cache-rows-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = new Sqlite(':memory:');
  t.after(() => db.close());
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dir, 'store'), fsync: false });
  const registry = createCacheRegistry({ caches: createCachesRepo(db), store, keysDir: join(dir, 'keys') });
  // Another process (the admin CLI) writes through its own connection.
  const other = createCacheRegistry({ caches: createCachesRepo(db), store, keysDir: join(dir, 'keys') });

  assert.equal(registry.get('main'), undefined);
  await other.create('main', { private: false, priority: 40 });
  assert.equal(registry.get('main')?.private, false, 'a cache created elsewhere serves at once');

  await registry.ensure('main', { private: true, priority: 40 });
  assert.equal(registry.get('main')?.private, true, 'ensure in this process is seen at once');
  assert.throws(() => {
    (registry.get('main') as { private: boolean }).private = false;
  }, 'rows handed out are frozen');
});
