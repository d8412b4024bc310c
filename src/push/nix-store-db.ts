import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { NarhubError } from '../errors.js';

/**
 * Nix's own database, read-only: how watch-store learns which paths became valid without listing
 * the whole store. Every valid path is a row of `ValidPaths` whose `id` is an AUTOINCREMENT key,
 * so ids only grow (a path collected and added again gets a new one) and "everything after the
 * last id seen" is exactly what was registered since: one indexed range query, whatever the
 * store's size. The table and its key have been the same since Nix 1.x (schema 7 to 10) and in
 * Lix. The connection lives for one query, so it never holds back Nix's WAL checkpoints.
 */

/** `$NIX_STATE_DIR/db/db.sqlite`, as Nix finds it (`/nix/var/nix/db/db.sqlite` by default). */
export function nixDatabasePath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.NIX_STATE_DIR || '/nix/var/nix', 'db', 'db.sqlite');
}

export interface RegisteredPath {
  id: number;
  path: string;
}

export interface NewPaths {
  /** Paths registered after the given id, oldest first (at most `limit`). */
  paths: RegisteredPath[];
  /**
   * The highest id Nix ever handed out (`sqlite_sequence`): it never goes down, even when the
   * newest paths are collected, so a value below an id seen before means a new database.
   */
  sequence: number;
}

const READ_TIMEOUT_MS = 5000;

/** Runs `read` on a fresh read-only connection to Nix's database, explaining a failure to open it. */
function withDatabase<T>(file: string, read: (db: Sqlite.Database) => T): T {
  let db: Sqlite.Database;
  try {
    db = new Sqlite(file, { readonly: true, fileMustExist: true, timeout: READ_TIMEOUT_MS });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new NarhubError(
      'UNAVAILABLE',
      `cannot read Nix's database ${file} (${e.code ?? 'error'}: ${e.message}); watch-store needs read access to it ` +
        `(run it as root, as Nix's daemon runs)`,
    );
  }
  try {
    return read(db);
  } catch (err) {
    throw new NarhubError('UNAVAILABLE', `cannot read Nix's database ${file}: ${(err as Error).message}`);
  } finally {
    db.close();
  }
}

/** The paths Nix registered after `afterId`, and the highest id it ever gave. */
export function readNewPaths(file: string, afterId: number, limit: number): NewPaths {
  return withDatabase(file, (db) => {
    // One read transaction, so the sequence and the rows agree.
    return db.transaction(() => {
      const seq = db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'ValidPaths'`).get() as
        | { seq: number }
        | undefined;
      const paths = db
        .prepare('SELECT id, path FROM ValidPaths WHERE id > ? ORDER BY id LIMIT ?')
        .all(afterId, limit) as RegisteredPath[];
      return { paths, sequence: seq?.seq ?? 0 };
    })();
  });
}
