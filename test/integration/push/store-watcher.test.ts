// watch-store's producer against a database with Nix's schema (the ValidPaths table as Nix 2.8
// creates it), written the way Nix writes it: WAL mode, one connection per command.
import assert from 'node:assert/strict';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import Sqlite from 'better-sqlite3';
import { listEntries, readEntry } from '../../../src/push/push-queue.js';
import { startStoreWatcher, type StoreWatcher } from '../../../src/push/store-watcher.js';
import { waitFor } from '../../helpers/hub.js';
import { makeTempDir, type Cleanup } from '../../helpers/tmp.js';

const SCHEMA = `
CREATE TABLE ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer,
    sigs             text,
    ca               text
);`;

const storePath = (n: number) => `/nix/store/${String(n).padStart(32, '0')}-p${n}`;

/** Creates a Nix-shaped database at `file`; registers and collects paths as Nix would. */
function nixDatabase(file: string) {
  const open = () => {
    const db = new Sqlite(file);
    db.pragma('journal_mode = wal');
    return db;
  };
  const db = open();
  db.exec(SCHEMA);
  db.close();
  let next = 1;
  return {
    register(count: number): string[] {
      const db = open();
      const insert = db.prepare(
        "INSERT INTO ValidPaths (path, hash, registrationTime, narSize) VALUES (?, 'sha256:x', 1, 1)",
      );
      const paths = Array.from({ length: count }, () => storePath(next++));
      db.transaction(() => {
        for (const p of paths) insert.run(p);
      })();
      db.close();
      return paths;
    },
    collect(path: string): void {
      const db = open();
      db.prepare('DELETE FROM ValidPaths WHERE path = ?').run(path);
      db.close();
    },
  };
}

async function queuedPaths(queue: string): Promise<string[][]> {
  const names = await listEntries(queue).catch(() => [] as string[]);
  return Promise.all(names.map(async (n) => (await readEntry(queue, n))!.entry.paths));
}

async function setUp(t: Cleanup) {
  const dir = await makeTempDir(t, 'narhub-watch-');
  await mkdir(join(dir, 'db'));
  await mkdir(join(dir, 'queue'));
  const database = join(dir, 'db', 'db.sqlite');
  const lines: string[] = [];
  const start = (intervalMs = 60_000): Promise<StoreWatcher> =>
    startStoreWatcher({
      database,
      stateDir: dir,
      queueDir: join(dir, 'queue'),
      intervalMs,
      log: (l) => lines.push(l),
      onQueued: () => undefined,
    }).then((w) => {
      t.after(() => w.close());
      return w;
    });
  return { dir, database, queue: join(dir, 'queue'), lines, start };
}

test('watch-store queues paths Nix registers, on inotify, and after a restart what came meanwhile', async (t) => {
  const { dir, database, queue, lines, start } = await setUp(t);
  const nix = nixDatabase(database);
  nix.register(2);

  // The interval is a minute: only the watch on the database directory can make it look in time.
  const first = await start();
  assert.equal(first.cursor(), 2, 'what the store held at the first start is not new');
  assert.deepEqual(await queuedPaths(queue), []);
  const batch = nix.register(3);
  // The cursor moves only after the entry is written.
  const cursorFile = join(dir, 'cursor');
  await waitFor('the cursor to move', async () => (await readFile(cursorFile, 'utf8')).includes('5'), 10_000, 50);
  assert.deepEqual(JSON.parse(await readFile(cursorFile, 'utf8')), { lastId: 5 });
  assert.deepEqual(await queuedPaths(queue), [batch]);
  assert.equal(first.cursor(), 5);

  // The newest path collected: ids never go back, so this is no new database.
  nix.collect(batch[2]!);
  await first.scan();
  assert.equal(first.cursor(), 5);
  first.close();

  const meanwhile = nix.register(2);
  const second = await start();
  assert.match(lines.join('\n'), /resuming after Nix's path id 5/);
  assert.deepEqual((await queuedPaths(queue)).at(-1), meanwhile);
  assert.equal(second.cursor(), 7);
  assert.equal((await queuedPaths(queue)).length, 2, 'nothing is queued twice');
});

test('watch-store queues all of a recreated Nix database; an unreadable one fails the start', async (t) => {
  const { dir, database, queue, lines, start } = await setUp(t);
  const nix = nixDatabase(database);
  nix.register(5);
  const watcher = await start();
  assert.equal(watcher.cursor(), 5);

  // A new store: a fresh database moved into place.
  const fresh = join(dir, 'db', 'new.sqlite');
  const recreated = nixDatabase(fresh);
  const paths = recreated.register(2);
  await rm(`${database}-wal`, { force: true });
  await rm(`${database}-shm`, { force: true });
  await rename(fresh, database);
  await watcher.scan();
  assert.match(lines.join('\n'), /restarted its path ids \(highest 2, below the 5 seen\)/);
  assert.deepEqual(await queuedPaths(queue), [paths]);
  assert.equal(watcher.cursor(), 2);
  watcher.close();

  const missing = await setUp(t);
  await assert.rejects(missing.start(), /cannot read Nix's database .*db\.sqlite \(SQLITE_CANTOPEN/);
});
