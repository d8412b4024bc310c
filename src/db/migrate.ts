import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Database } from 'better-sqlite3';
import { NarhubError } from '../errors.js';
import { isBusy } from './open.js';

/** `0001-initial.sql`: a four-digit version, then a kebab-case name. */
const FILE_NAME = /^(\d{4})-([a-z0-9]+(?:-[a-z0-9]+)*)\.sql$/;

/** How long to keep queueing behind another process's migration before giving up. */
const LOCK_WAIT_MS = 120_000;

interface MigrationFile {
  version: number;
  name: string;
  file: string;
  sql: string;
  sha256: string;
}

interface AppliedRow {
  version: number;
  name: string;
  sha256: string;
}

/**
 * Brings the schema up to date with the forward-only migrations in `migrationsDir`, one
 * transaction per file. Each transaction re-reads what is applied under the write lock, so the
 * server and a CLI command starting together apply each file exactly once between them.
 * Refuses a database whose applied migrations were edited, removed, or come from a newer narhub.
 */
export function migrate(db: Database, migrationsDir: string): { applied: string[] } {
  const files = readMigrations(migrationsDir);
  const applied: string[] = [];
  for (;;) {
    const done = applyNext(db, files, migrationsDir);
    if (done === undefined) return { applied };
    applied.push(done);
  }
}

/** `<package root>/migrations`, whether running from `src/db/` or compiled `dist/src/db/`. */
export function defaultMigrationsDir(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'migrations');
    if (dirname(dir) === dir) throw new NarhubError('INTERNAL', `no package.json in ${start} or above it`);
  }
}

/** Applies the first pending migration and returns its file name, or undefined when none is left. */
function applyNext(db: Database, files: MigrationFile[], dir: string): string | undefined {
  // Table rebuilds (the only way to alter most of a SQLite table) need foreign keys off, or
  // DROP TABLE would cascade into child rows; it cannot change inside a transaction, and the
  // foreign_key_check below stands in for it.
  const foreignKeys = db.pragma('foreign_keys', { simple: true }) === 1;
  if (foreignKeys) db.pragma('foreign_keys = OFF');
  try {
    beginImmediate(db);
    try {
      const next = pendingMigrations(readApplied(db), files, dir)[0];
      if (next !== undefined) run(db, next);
      db.exec('COMMIT');
      return next?.file;
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK');
      throw err;
    }
  } finally {
    if (foreignKeys) db.pragma('foreign_keys = ON');
  }
}

function run(db: Database, migration: MigrationFile): void {
  try {
    db.exec(migration.sql);
  } catch (err) {
    throw new NarhubError('INTERNAL', `migration ${migration.file} failed: ${messageOf(err)}`, { cause: err });
  }
  if (!db.inTransaction) {
    throw new NarhubError(
      'CONFIG_INVALID',
      `migration ${migration.file} ended the transaction itself; remove its BEGIN/COMMIT statements`,
    );
  }
  const violations = db.pragma('foreign_key_check') as unknown[];
  if (violations.length > 0) {
    throw new NarhubError(
      'INTERNAL',
      `migration ${migration.file} leaves ${violations.length} foreign key violation(s)`,
      {
        details: { violations: violations.slice(0, 10) },
      },
    );
  }
  db.prepare('INSERT INTO schema_migrations (version, name, sha256, applied_at) VALUES (?, ?, ?, ?)').run(
    migration.version,
    migration.name,
    migration.sha256,
    new Date().toISOString(),
  );
}

function readApplied(db: Database): AppliedRow[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    applied_at TEXT NOT NULL
  ) STRICT`);
  return db.prepare('SELECT version, name, sha256 FROM schema_migrations ORDER BY version').all() as AppliedRow[];
}

/** Checks the applied history against the files and returns the files still to apply, in order. */
function pendingMigrations(applied: AppliedRow[], files: MigrationFile[], dir: string): MigrationFile[] {
  const newestFile = files.at(-1);
  const newestApplied = applied.at(-1);
  if (newestApplied !== undefined && newestApplied.version > (newestFile?.version ?? -1)) {
    throw new NarhubError(
      'CONFIG_INVALID',
      `the database is at migration ${label(newestApplied)}, newer than the newest file in ${dir} ` +
        `(${newestFile?.file ?? 'none'}); it was migrated by a newer narhub, and downgrades are not supported`,
    );
  }
  const byVersion = new Map(files.map((f) => [f.version, f]));
  for (const row of applied) {
    const file = byVersion.get(row.version);
    if (file === undefined) {
      throw new NarhubError(
        'CONFIG_INVALID',
        `applied migration ${label(row)}.sql is missing from ${dir}; applied migrations must never be removed`,
      );
    }
    if (file.name !== row.name || file.sha256 !== row.sha256) {
      throw new NarhubError(
        'CONFIG_INVALID',
        `migration ${file.file} differs from the ${label(row)}.sql applied to this database ` +
          `(sha256 ${file.sha256.slice(0, 12)}… vs ${row.sha256.slice(0, 12)}…); ` +
          'restore the applied version and put the change in a new migration',
      );
    }
  }
  const done = new Set(applied.map((row) => row.version));
  const pending = files.filter((f) => !done.has(f.version));
  const first = pending[0];
  if (first !== undefined && newestApplied !== undefined && first.version < newestApplied.version) {
    throw new NarhubError(
      'CONFIG_INVALID',
      `migration ${first.file} is numbered below the already applied ${label(newestApplied)}.sql; ` +
        'renumber it after the newest migration',
    );
  }
  return pending;
}

function readMigrations(dir: string): MigrationFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new NarhubError('CONFIG_INVALID', `cannot read migrations directory ${dir}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  const files: MigrationFile[] = [];
  const seen = new Map<number, string>();
  for (const file of names) {
    if (!file.endsWith('.sql')) continue;
    const match = FILE_NAME.exec(file);
    if (match === null) {
      // Skipping it silently would leave the schema short of a change someone meant to ship.
      throw new NarhubError('CONFIG_INVALID', `migration ${file} in ${dir} is not named NNNN-kebab-name.sql`);
    }
    const version = Number(match[1]);
    const clash = seen.get(version);
    if (clash !== undefined) {
      throw new NarhubError('CONFIG_INVALID', `migrations ${clash} and ${file} in ${dir} share version ${match[1]}`);
    }
    seen.set(version, file);
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(dir, file));
    } catch (err) {
      throw new NarhubError('CONFIG_INVALID', `cannot read migration ${file} in ${dir}: ${messageOf(err)}`, {
        cause: err,
      });
    }
    files.push({
      version,
      name: match[2]!,
      file,
      sql: bytes.toString('utf8'),
      sha256: createHash('sha256').update(bytes).digest('hex'),
    });
  }
  return files.sort((a, b) => a.version - b.version);
}

/**
 * Takes the write lock up front, so two processes cannot both read "pending" and then apply.
 * Each attempt already waits out the connection's busy timeout; retrying covers a long migration
 * in the other process.
 */
function beginImmediate(db: Database): void {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      db.exec('BEGIN IMMEDIATE');
      return;
    } catch (err) {
      if (!isBusy(err)) throw err;
      if (Date.now() >= deadline) {
        throw new NarhubError(
          'UNAVAILABLE',
          `the database stayed locked by another process for ${LOCK_WAIT_MS / 1000}s while migrating`,
          {
            cause: err,
          },
        );
      }
      // Keeps a connection opened with no busy timeout from spinning.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
}

function label(row: AppliedRow): string {
  return `${String(row.version).padStart(4, '0')}-${row.name}`;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
