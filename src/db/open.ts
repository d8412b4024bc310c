import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Sqlite, { type Database } from 'better-sqlite3';
import { NarhubError } from '../errors.js';

/** How long a statement waits for another connection's write lock before failing with SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5000;

/**
 * Opens the narhub database with the settings every connection needs. The server and admin CLI
 * commands open the same file at once: WAL lets readers run beside the one writer, and the busy
 * timeout makes writers queue instead of failing.
 */
export function openDatabase(path: string | ':memory:'): Database {
  if (path !== ':memory:' && path !== '') mkdirSync(dirname(path), { recursive: true });
  let db: Database;
  try {
    db = new Sqlite(path, { timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    throw new NarhubError('CONFIG_INVALID', `cannot open database ${path}: ${messageOf(err)}`, { cause: err });
  }
  try {
    // First, so the journal-mode switch below also waits for other connections.
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (!db.memory) {
      // Persistent in the file; a no-op for every open after the first.
      const mode = switchToWal(db);
      if (mode !== 'wal') {
        throw new NarhubError(
          'CONFIG_INVALID',
          `database ${path} cannot use WAL journal mode (got ${String(mode)}); put it on a local filesystem`,
        );
      }
    }
    // Per connection, so set on every open. NORMAL is durable enough with WAL: a power cut may
    // lose the last commits but never corrupts the file.
    db.pragma('foreign_keys = ON');
    db.pragma('synchronous = NORMAL');
    beginImmediateByDefault(db);
    return db;
  } catch (err) {
    db.close();
    if (err instanceof NarhubError) throw err;
    const code = isBusy(err) ? 'UNAVAILABLE' : 'CONFIG_INVALID';
    throw new NarhubError(code, `cannot configure database ${path}: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * Makes every transaction function of `db` BEGIN IMMEDIATE when called (its `.deferred`
 * variant stays). The server and admin commands write the same file from separate connections;
 * in WAL, a DEFERRED transaction that reads and then writes fails at once with
 * SQLITE_BUSY_SNAPSHOT when another connection committed in between (the busy timeout does not
 * apply: its snapshot is stale). IMMEDIATE takes the write lock at BEGIN, waiting its turn under
 * the busy timeout, so whatever it reads stays true until it commits. Every transaction of
 * narhub's database writes, so none loses by it. Nested calls stay savepoints.
 */
function beginImmediateByDefault(db: Database): void {
  const transaction = db.transaction.bind(db);
  db.transaction = ((fn: (...args: unknown[]) => unknown) => {
    // better-sqlite3's variants carry read-only properties: wrap, never assign to them.
    const variants = transaction(fn);
    const run = (...args: unknown[]): unknown => variants.immediate(...args);
    return Object.assign(run, {
      default: run,
      deferred: variants.deferred,
      immediate: variants.immediate,
      exclusive: variants.exclusive,
      database: db,
    });
  }) as Database['transaction'];
}

/** How long opens racing on a fresh file keep retrying the switch to WAL. */
const WAL_SWITCH_WAIT_MS = 30_000;

/**
 * Two connections that both read a fresh file and then both ask for WAL deadlock on the lock
 * upgrade, and SQLite answers one of them SQLITE_BUSY at once, without its busy handler. That
 * loser simply tries again (the winner's switch then makes it a no-op).
 */
function switchToWal(db: Database): unknown {
  const deadline = Date.now() + WAL_SWITCH_WAIT_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      return db.pragma('journal_mode = WAL', { simple: true });
    } catch (err) {
      if (!isBusy(err) || Date.now() > deadline) throw err;
      Atomics.wait(
        new Int32Array(new SharedArrayBuffer(4)),
        0,
        0,
        Math.min(200, 5 + attempt * 10 + Math.random() * 20),
      );
    }
  }
}

export function isBusy(err: unknown): boolean {
  return err instanceof Sqlite.SqliteError && (err.code === 'SQLITE_BUSY' || err.code.startsWith('SQLITE_BUSY_'));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
