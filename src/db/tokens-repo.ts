import type { Database } from 'better-sqlite3';

/** Rights on caches (read < write < admin), or `trigger`: starting evaluations of one project. */
export type Permission = 'read' | 'write' | 'admin' | 'trigger';

export interface TokenRow {
  id: string;
  name: string | null;
  cachePattern: string;
  permission: Permission;
  /** The project a `trigger` token may trigger; null for cache tokens. */
  project: string | null;
  expiresAt: number | null;
  revokedAt: number | null;
  createdAt: number;
  lastUsedAt: number | null;
}

interface RawToken {
  id: string;
  name: string | null;
  token_hash: string;
  cache_pattern: string;
  permission: Permission;
  project: string | null;
  expires_at: number | null;
  revoked_at: number | null;
  created_at: number;
  last_used_at: number | null;
}

const toToken = (r: RawToken): TokenRow => ({
  id: r.id,
  name: r.name,
  cachePattern: r.cache_pattern,
  permission: r.permission,
  project: r.project,
  expiresAt: r.expires_at,
  revokedAt: r.revoked_at,
  createdAt: r.created_at,
  lastUsedAt: r.last_used_at,
});

/** Tokens, looked up by the SHA-256 of the secret; the secret itself is never stored. */
export function createTokensRepo(db: Database) {
  const insert = db.prepare(`
    INSERT INTO tokens (id, name, token_hash, cache_pattern, permission, project, expires_at, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
  const byHash = db.prepare<[string], RawToken>('SELECT * FROM tokens WHERE token_hash = ?');
  const byId = db.prepare<[string], RawToken>('SELECT * FROM tokens WHERE id = ?');
  const all = db.prepare<[], RawToken>('SELECT * FROM tokens ORDER BY created_at, id');
  const revoke = db.prepare('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
  const touch = db.prepare('UPDATE tokens SET last_used_at = ? WHERE id = ?');

  return {
    insert(row: {
      id: string;
      name: string | null;
      tokenHash: string;
      cachePattern: string;
      permission: Permission;
      project?: string | null;
      expiresAt: number | null;
    }): TokenRow {
      const now = Date.now();
      const project = row.project ?? null;
      insert.run(row.id, row.name, row.tokenHash, row.cachePattern, row.permission, project, row.expiresAt, now);
      return {
        id: row.id,
        name: row.name,
        cachePattern: row.cachePattern,
        permission: row.permission,
        project,
        expiresAt: row.expiresAt,
        revokedAt: null,
        createdAt: now,
        lastUsedAt: null,
      };
    },
    findByHash(tokenHash: string): TokenRow | undefined {
      const r = byHash.get(tokenHash);
      return r && toToken(r);
    },
    get(id: string): TokenRow | undefined {
      const r = byId.get(id);
      return r && toToken(r);
    },
    list(): TokenRow[] {
      return all.all().map(toToken);
    },
    /** True when the token existed and was not already revoked. */
    revoke(id: string): boolean {
      return revoke.run(Date.now(), id).changes > 0;
    },
    touch(id: string, at: number): void {
      touch.run(at, id);
    },
  };
}

export type TokensRepo = ReturnType<typeof createTokensRepo>;
