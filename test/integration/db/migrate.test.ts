import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it, type TestContext } from 'node:test';
import type { Database } from 'better-sqlite3';
import { NarhubError } from '../../../src/errors.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { makeTempDir } from '../../helpers/tmp.js';

interface Fixture {
  dir: string;
  dbPath: string;
  write(files: Record<string, string>): Promise<void>;
  open(): Database;
}

async function fixture(t: TestContext): Promise<Fixture> {
  const root = await makeTempDir(t, 'narhub-db-');
  const dir = join(root, 'migrations');
  await mkdir(dir);
  const dbPath = join(root, 'data', 'narhub.db');
  return {
    dir,
    dbPath,
    write: async (files) => {
      for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
    },
    open: () => {
      const db = openDatabase(dbPath);
      t.after(() => db.close());
      return db;
    },
  };
}

function configInvalid(pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof NarhubError, `expected a NarhubError, got ${String(err)}`);
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.match(err.message, pattern);
    return true;
  };
}

/** Three migrations that must run in order: each builds on the previous one. */
const BASIC = {
  '0010-add-index.sql': "CREATE INDEX log_name ON log (name); INSERT INTO log (name) VALUES ('0010');",
  '0001-create-log.sql':
    'CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL); ' +
    "INSERT INTO log (name) VALUES ('0001');",
  '0002-add-column.sql': "ALTER TABLE log ADD COLUMN note TEXT; INSERT INTO log (name, note) VALUES ('0002', 'x');",
};

function logNames(db: Database): string[] {
  return (db.prepare('SELECT name FROM log ORDER BY seq').all() as { name: string }[]).map((r) => r.name);
}

describe('openDatabase', () => {
  it('opens a file in WAL mode with the shared pragmas, creating its directory', async (t) => {
    const f = await fixture(t);
    const db = f.open();
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
    assert.equal(db.pragma('busy_timeout', { simple: true }), 5000);
    assert.equal(db.pragma('synchronous', { simple: true }), 1); // NORMAL
    assert.ok(existsSync(f.dbPath));
    // WAL is a property of the file: a second connection finds it already on.
    assert.equal(f.open().pragma('journal_mode', { simple: true }), 'wal');
  });

  it('opens an in-memory database with foreign keys on', () => {
    const db = openDatabase(':memory:');
    try {
      assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
      db.exec('CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (p INTEGER REFERENCES p (id))');
      assert.throws(() => db.exec('INSERT INTO c VALUES (1)'), /FOREIGN KEY/);
    } finally {
      db.close();
    }
  });

  it('lets a reader in while another connection holds a write transaction', async (t) => {
    const f = await fixture(t);
    const writer = f.open();
    const reader = f.open();
    writer.exec('CREATE TABLE t (x INTEGER)');
    writer.exec('BEGIN IMMEDIATE; INSERT INTO t VALUES (1)');
    assert.deepEqual(reader.prepare('SELECT count(*) AS n FROM t').get(), { n: 0 });
    writer.exec('COMMIT');
    assert.deepEqual(reader.prepare('SELECT count(*) AS n FROM t').get(), { n: 1 });
  });
});

describe('migrate', () => {
  it('applies migrations in version order and records them', async (t) => {
    const f = await fixture(t);
    await f.write({ ...BASIC, 'README.md': 'not a migration' });
    const db = f.open();
    assert.deepEqual(migrate(db, f.dir), {
      applied: ['0001-create-log.sql', '0002-add-column.sql', '0010-add-index.sql'],
    });
    assert.deepEqual(logNames(db), ['0001', '0002', '0010']);
    const rows = db
      .prepare('SELECT version, name, sha256, applied_at FROM schema_migrations ORDER BY version')
      .all() as {
      version: number;
      name: string;
      sha256: string;
      applied_at: string;
    }[];
    assert.deepEqual(
      rows.map((r) => [r.version, r.name]),
      [
        [1, 'create-log'],
        [2, 'add-column'],
        [10, 'add-index'],
      ],
    );
    for (const row of rows) {
      assert.match(row.sha256, /^[0-9a-f]{64}$/);
      assert.ok(!Number.isNaN(Date.parse(row.applied_at)), row.applied_at);
    }
  });

  it('is idempotent and applies only what is new', async (t) => {
    const f = await fixture(t);
    await f.write(BASIC);
    migrate(f.open(), f.dir);
    const db = f.open();
    assert.deepEqual(migrate(db, f.dir), { applied: [] });
    await f.write({ '0011-more.sql': "INSERT INTO log (name) VALUES ('0011');" });
    assert.deepEqual(migrate(db, f.dir), { applied: ['0011-more.sql'] });
    assert.deepEqual(migrate(db, f.dir), { applied: [] });
    assert.deepEqual(logNames(db), ['0001', '0002', '0010', '0011']);
  });

  it('accepts an empty migrations directory', async (t) => {
    const f = await fixture(t);
    assert.deepEqual(migrate(f.open(), f.dir), { applied: [] });
  });

  it('refuses an applied migration whose file was edited', async (t) => {
    const f = await fixture(t);
    await f.write(BASIC);
    const db = f.open();
    migrate(db, f.dir);
    await f.write({ '0002-add-column.sql': `${BASIC['0002-add-column.sql']}\n-- harmless?` });
    await f.write({ '0011-more.sql': "INSERT INTO log (name) VALUES ('0011');" });
    assert.throws(() => migrate(db, f.dir), configInvalid(/0002-add-column\.sql.*new migration/));
    // Nothing after the refusal ran.
    assert.deepEqual(logNames(db), ['0001', '0002', '0010']);
  });

  it('refuses an applied migration that was renamed', async (t) => {
    const f = await fixture(t);
    await f.write(BASIC);
    const db = f.open();
    migrate(db, f.dir);
    await rm(join(f.dir, '0002-add-column.sql'));
    await f.write({ '0002-renamed.sql': BASIC['0002-add-column.sql'] });
    assert.throws(() => migrate(db, f.dir), configInvalid(/0002-renamed\.sql.*0002-add-column/));
  });

  it('refuses an applied migration whose file went missing', async (t) => {
    const f = await fixture(t);
    await f.write(BASIC);
    const db = f.open();
    migrate(db, f.dir);
    await rm(join(f.dir, '0002-add-column.sql'));
    assert.throws(() => migrate(db, f.dir), configInvalid(/0002-add-column\.sql is missing/));
  });

  it('refuses a database migrated by a newer narhub', async (t) => {
    const f = await fixture(t);
    await f.write(BASIC);
    const db = f.open();
    migrate(db, f.dir);
    await rm(join(f.dir, '0010-add-index.sql'));
    assert.throws(() => migrate(db, f.dir), configInvalid(/0010-add-index.*newer.*downgrade/));
    await rm(join(f.dir, '0001-create-log.sql'));
    await rm(join(f.dir, '0002-add-column.sql'));
    assert.throws(() => migrate(db, f.dir), configInvalid(/downgrade/));
  });

  it('refuses a new migration numbered below an applied one', async (t) => {
    const f = await fixture(t);
    await f.write(BASIC);
    const db = f.open();
    migrate(db, f.dir);
    await f.write({ '0005-late.sql': 'SELECT 1;' });
    assert.throws(() => migrate(db, f.dir), configInvalid(/0005-late\.sql.*below/));
  });

  it('refuses badly named and duplicate migration files', async (t) => {
    const f = await fixture(t);
    await f.write({ '1-short.sql': 'SELECT 1;' });
    assert.throws(() => migrate(f.open(), f.dir), configInvalid(/1-short\.sql.*NNNN-kebab-name/));
    await rm(join(f.dir, '1-short.sql'));
    await f.write({ '0001-Camel_Case.sql': 'SELECT 1;' });
    assert.throws(() => migrate(f.open(), f.dir), configInvalid(/0001-Camel_Case/));
    await rm(join(f.dir, '0001-Camel_Case.sql'));
    await f.write({ '0001-a.sql': 'SELECT 1;', '0001-b.sql': 'SELECT 1;' });
    assert.throws(() => migrate(f.open(), f.dir), configInvalid(/share version 0001/));
  });

  it('refuses a missing migrations directory', async (t) => {
    const f = await fixture(t);
    assert.throws(() => migrate(f.open(), join(f.dir, 'nope')), configInvalid(/cannot read migrations directory/));
  });

  it('rolls a failing migration back whole and keeps the earlier ones', async (t) => {
    const f = await fixture(t);
    await f.write({
      '0001-create-log.sql': BASIC['0001-create-log.sql'],
      '0002-broken.sql':
        "INSERT INTO log (name) VALUES ('0002'); CREATE TABLE half (x); INSERT INTO nowhere VALUES (1);",
    });
    const db = f.open();
    assert.throws(
      () => migrate(db, f.dir),
      (err) => err instanceof NarhubError && /0002-broken\.sql failed/.test(err.message),
    );
    assert.equal(db.inTransaction, false);
    assert.deepEqual(logNames(db), ['0001']);
    assert.equal(db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'half'").pluck().get(), 0);
    assert.deepEqual(db.prepare('SELECT version FROM schema_migrations').pluck().all(), [1]);

    // An unapplied migration may still be fixed in place.
    await f.write({ '0002-broken.sql': "INSERT INTO log (name) VALUES ('0002');" });
    assert.deepEqual(migrate(db, f.dir), { applied: ['0002-broken.sql'] });
  });

  it('runs table rebuilds with foreign keys off, checks them, and turns them back on', async (t) => {
    const f = await fixture(t);
    await f.write({
      '0001-tables.sql': `
        CREATE TABLE parent (id INTEGER PRIMARY KEY, label TEXT);
        CREATE TABLE child (id INTEGER PRIMARY KEY,
          parent_id INTEGER NOT NULL REFERENCES parent (id) ON DELETE CASCADE);
        INSERT INTO parent VALUES (1, 'p'); INSERT INTO child VALUES (10, 1);`,
      // The documented 12-step rebuild; with foreign keys on, DROP TABLE would delete the child.
      '0002-rebuild-parent.sql': `
        CREATE TABLE parent_new (id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '');
        INSERT INTO parent_new SELECT id, label FROM parent;
        DROP TABLE parent;
        ALTER TABLE parent_new RENAME TO parent;`,
    });
    const db = f.open();
    migrate(db, f.dir);
    assert.deepEqual(db.prepare('SELECT id FROM child').pluck().all(), [10]);
    assert.equal(db.pragma('foreign_keys', { simple: true }), 1);

    await f.write({ '0003-orphan.sql': 'INSERT INTO child VALUES (11, 99);' });
    assert.throws(() => migrate(db, f.dir), /0003-orphan\.sql leaves 1 foreign key violation/);
    assert.deepEqual(db.prepare('SELECT id FROM child').pluck().all(), [10]);
    assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
  });

  it('refuses a migration that commits on its own', async (t) => {
    const f = await fixture(t);
    await f.write({ '0001-commits.sql': 'CREATE TABLE x (a); COMMIT;' });
    assert.throws(() => migrate(f.open(), f.dir), configInvalid(/BEGIN\/COMMIT/));
  });

  /** 0001 creates `log`; every later file appends its number; each holds the lock a while. */
  function racingMigrations(count: number): Record<string, string> {
    const files: Record<string, string> = {
      '0001-create-log.sql': 'CREATE TABLE log (n INTEGER NOT NULL); SELECT sleep_ms(20);',
    };
    for (let n = 2; n <= count; n++) {
      files[`${String(n).padStart(4, '0')}-step-${n}.sql`] = `INSERT INTO log VALUES (${n}); SELECT sleep_ms(20);`;
    }
    return files;
  }

  async function race(f: Fixture, children: number): Promise<string[][]> {
    const goAt = Date.now() + 1500;
    return Promise.all(Array.from({ length: children }, () => migrateInChild(f.dbPath, f.dir, goAt)));
  }

  function assertMigratedOnce(f: Fixture, count: number): void {
    const db = f.open();
    assert.deepEqual(
      db.prepare('SELECT n FROM log ORDER BY n').pluck().all(),
      Array.from({ length: count - 1 }, (_, i) => i + 2),
    );
    assert.equal(db.prepare('SELECT count(*) FROM schema_migrations').pluck().get(), count);
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  }

  it('applies each migration once when several processes start together on a fresh file', async (t) => {
    const f = await fixture(t);
    const files = racingMigrations(8);
    await f.write(files);
    const results = await race(f, 4);
    assert.deepEqual(
      results.flat().sort(),
      Object.keys(files).sort(),
      `each file applied exactly once: ${JSON.stringify(results)}`,
    );
    assertMigratedOnce(f, 8);
  });

  it('applies each migration once when several processes start together on a migrated file', async (t) => {
    const f = await fixture(t);
    const files = racingMigrations(12);
    // With schema_migrations already there a transaction's first statement is a read, and only
    // BEGIN IMMEDIATE keeps two processes from both reading "pending" before either writes.
    await f.write({ '0001-create-log.sql': files['0001-create-log.sql']! });
    const first = f.open();
    first.function('sleep_ms', (ms: unknown) => ms);
    migrate(first, f.dir);
    first.close();
    await f.write(files);

    const results = await race(f, 3);
    assert.deepEqual(
      results.flat().sort(),
      Object.keys(files).slice(1).sort(),
      `each file applied exactly once: ${JSON.stringify(results)}`,
    );
    assertMigratedOnce(f, 12);
  });
});

describe('defaultMigrationsDir', () => {
  it('is the migrations folder next to package.json', () => {
    const dir = defaultMigrationsDir();
    assert.equal(dir, join(dirname(dir), 'migrations'));
    assert.ok(existsSync(join(dirname(dir), 'package.json')), dir);
  });
});

/**
 * Opens the database and migrates in a separate process, from a start time shared by all children so
 * they really race (fresh file included: the first opens also race to switch it to WAL).
 */
async function migrateInChild(dbPath: string, dir: string, goAt: number): Promise<string[]> {
  const openUrl = new URL('../../../src/db/open.js', import.meta.url).href;
  const migrateUrl = new URL('../../../src/db/migrate.js', import.meta.url).href;
  const script = `
    import { openDatabase } from ${JSON.stringify(openUrl)};
    import { migrate } from ${JSON.stringify(migrateUrl)};
    const [dbPath, dir, goAt] = process.argv.slice(1);
    while (Date.now() < Number(goAt)) await new Promise((r) => setTimeout(r, 1));
    const db = openDatabase(dbPath);
    db.function('sleep_ms', (ms) => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms); return ms; });
    const { applied } = migrate(db, dir);
    db.close();
    process.stdout.write(JSON.stringify(applied) + '\\n');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, dbPath, dir, String(goAt)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const lines: string[] = [];
  const reading = (async () => {
    for await (const line of createInterface({ input: child.stdout })) lines.push(line);
  })();
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  await reading;
  assert.equal(code, 0, `child failed: ${stderr}`);
  return JSON.parse(lines.at(-1) ?? 'null') as string[];
}
