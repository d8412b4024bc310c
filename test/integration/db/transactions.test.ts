// Transactions on narhub's database begin IMMEDIATE (db/open.ts): one that reads and then writes
// while another connection writes the same file waits its turn instead of failing with
// SQLITE_BUSY_SNAPSHOT, which WAL answers a DEFERRED one at once, whatever the busy timeout.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import Sqlite from 'better-sqlite3';
import { openDatabase } from '../../../src/db/open.js';
import { makeTempDir } from '../../helpers/tmp.js';

async function twoConnections(t: Parameters<typeof makeTempDir>[0]) {
  const file = join(await makeTempDir(t), 'narhub.sqlite');
  const narhub = openDatabase(file);
  narhub.exec('CREATE TABLE counter (n INTEGER NOT NULL)');
  narhub.exec('INSERT INTO counter VALUES (0)');
  // Another process's connection (an admin command), which never waits.
  const other = new Sqlite(file, { timeout: 0 });
  t.after(() => {
    other.close();
    narhub.close();
  });
  return { narhub, other };
}

test('openDatabase: a transaction reading then writing holds the write lock from its start', async (t) => {
  const { narhub, other } = await twoConnections(t);
  const read = narhub.prepare('SELECT n FROM counter');
  const write = narhub.prepare('UPDATE counter SET n = ?');
  const otherWrite = other.prepare('UPDATE counter SET n = n + 100');
  let otherError: unknown;
  const increment = narhub.transaction(() => {
    const { n } = read.get() as { n: number };
    // Another connection commits between the read and the write: it cannot (the lock is held).
    try {
      otherWrite.run();
    } catch (err) {
      otherError = err;
    }
    write.run(n + 1);
  });
  increment();
  assert.equal((otherError as { code?: string } | undefined)?.code, 'SQLITE_BUSY', 'the other writer had to wait');
  assert.equal((read.get() as { n: number }).n, 1);
  // Nested, it is a savepoint of the outer transaction.
  narhub.transaction(() => increment())();
  assert.equal((read.get() as { n: number }).n, 2);
});

test('the same transaction run DEFERRED fails with SQLITE_BUSY_SNAPSHOT (what IMMEDIATE prevents)', async (t) => {
  const { narhub, other } = await twoConnections(t);
  const read = narhub.prepare('SELECT n FROM counter');
  const write = narhub.prepare('UPDATE counter SET n = ?');
  const increment = narhub.transaction(() => {
    const { n } = read.get() as { n: number };
    other.prepare('UPDATE counter SET n = n + 100').run();
    write.run(n + 1);
  });
  assert.throws(() => increment.deferred(), { code: 'SQLITE_BUSY_SNAPSHOT' });
  assert.equal((read.get() as { n: number }).n, 100, "only the other connection's write happened");
});
