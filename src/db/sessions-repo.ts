import type { Database } from 'better-sqlite3';

/** Browser sessions: the SHA-256 of the cookie's secret, the token it stands for, and its expiry. */
export function createSessionsRepo(db: Database) {
  const insert = db.prepare(
    'INSERT INTO ui_sessions (secret_hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
  );
  const get = db.prepare<[string, number], { token_id: string }>(
    'SELECT token_id FROM ui_sessions WHERE secret_hash = ? AND expires_at > ?',
  );
  const remove = db.prepare('DELETE FROM ui_sessions WHERE secret_hash = ?');
  const expired = db.prepare('DELETE FROM ui_sessions WHERE expires_at <= ?');
  return {
    insert(secretHash: string, tokenId: string, expiresAt: number): void {
      expired.run(Date.now());
      insert.run(secretHash, tokenId, Date.now(), expiresAt);
    },
    tokenId(secretHash: string): string | undefined {
      return get.get(secretHash, Date.now())?.token_id;
    },
    delete(secretHash: string): void {
      remove.run(secretHash);
    },
  };
}

export type SessionsRepo = ReturnType<typeof createSessionsRepo>;
