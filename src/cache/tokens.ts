import { createHash, randomBytes } from 'node:crypto';
import { NarhubError } from '../errors.js';
import type { Permission, TokenRow, TokensRepo } from '../db/tokens-repo.js';

export type { Permission, TokenRow };

// A trigger token has no rights on any cache.
const RANK: Record<Permission, number> = { trigger: 0, read: 1, write: 2, admin: 3 };
const TOKEN_PREFIX = 'nh_';

/**
 * The furthest a token's expiry may lie: 100 years. Past that it means nothing (and past year
 * 275760 no Date can show it); a token meant never to expire has no expiry at all.
 */
const MAX_TOKEN_LIFETIME_MS = 100 * 365 * 86_400_000;

/** An expiry must lie ahead, within MAX_TOKEN_LIFETIME_MS: a token dead on arrival or forever is a mistake. */
export function expiryProblem(expiresAt: number, now: number): string | undefined {
  if (!Number.isSafeInteger(expiresAt) || expiresAt <= now) return 'must be in the future';
  if (expiresAt > now + MAX_TOKEN_LIFETIME_MS) return 'must be at most 100 years from now (leave it out for none)';
  return undefined;
}

/** What `token list` and `GET /api/v1/tokens` show of a token: never its secret nor its hash. */
export interface TokenView {
  id: string;
  name: string | null;
  /** The caches it applies to, a name or glob; empty for a `trigger` token. */
  cache: string;
  /** The project a `trigger` token may trigger; null for cache tokens. */
  project: string | null;
  permission: Permission;
  status: 'active' | 'expired' | 'revoked';
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

export function tokenView(row: TokenRow, now = Date.now()): TokenView {
  // A stored time no Date can show (an older narhub took any expiry) is listed, not fatal.
  const iso = (t: number | null) =>
    t === null
      ? null
      : Number.isNaN(new Date(t).getTime())
        ? `${t} ms since 1970 (out of range)`
        : new Date(t).toISOString();
  const status =
    row.revokedAt !== null ? 'revoked' : row.expiresAt !== null && row.expiresAt <= now ? 'expired' : 'active';
  return {
    id: row.id,
    name: row.name,
    cache: row.cachePattern,
    project: row.project,
    permission: row.permission,
    status,
    createdAt: iso(row.createdAt)!,
    expiresAt: iso(row.expiresAt),
    revokedAt: iso(row.revokedAt),
    lastUsedAt: iso(row.lastUsedAt),
  };
}

function hashToken(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** `*` matches any run of characters, `?` one; everything else is literal. */
function cachePatternMatches(pattern: string, cacheName: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replaceAll('*', '.*')
      .replaceAll('?', '.')}$`,
  );
  return re.test(cacheName);
}

function assertValidCachePattern(pattern: string): void {
  if (!/^[a-z0-9_*?-]{1,63}$/.test(pattern)) {
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid cache pattern ${JSON.stringify(pattern)}: a cache name or a glob of a-z, 0-9, -, _, * and ?`,
    );
  }
}

/**
 * Bearer tokens: random secrets handed out once and stored only as SHA-256 hashes. Every check
 * reads the database, so a revocation or expiry takes effect on the very next request.
 */
export function createTokenService(deps: { tokens: TokensRepo; now?: () => number }) {
  const { tokens } = deps;
  const now = deps.now ?? Date.now;

  return {
    create(input: {
      cachePattern: string;
      permission: Permission;
      /** For `trigger`: the one project it may trigger (and no cache). */
      project?: string | undefined;
      name?: string | undefined;
      expiresAt?: number | undefined;
    }): { token: string; row: TokenRow } {
      if (!(input.permission in RANK)) throw new NarhubError('BAD_REQUEST', `unknown permission ${input.permission}`);
      if (input.permission === 'trigger') {
        if (!input.project || !/^[a-z0-9][a-z0-9_-]{0,62}$/.test(input.project))
          throw new NarhubError('BAD_REQUEST', 'a trigger token needs the project it may trigger');
        if (input.cachePattern !== '') throw new NarhubError('BAD_REQUEST', 'a trigger token has no cache');
      } else {
        if (input.project !== undefined) throw new NarhubError('BAD_REQUEST', 'only a trigger token names a project');
        assertValidCachePattern(input.cachePattern);
      }
      const problem = input.expiresAt === undefined ? undefined : expiryProblem(input.expiresAt, now());
      if (problem) throw new NarhubError('BAD_REQUEST', `a token's expiry ${problem}`);
      const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
      const id = `tk${randomBytes(6).toString('hex')}`;
      const row = tokens.insert({
        id,
        name: input.name ?? null,
        tokenHash: hashToken(token),
        cachePattern: input.cachePattern,
        permission: input.permission,
        project: input.project ?? null,
        expiresAt: input.expiresAt ?? null,
      });
      return { token, row };
    },
    /** The live token for a presented secret, or undefined when unknown, revoked or expired. */
    authenticate(secret: string): TokenRow | undefined {
      if (!secret.startsWith(TOKEN_PREFIX) || secret.length > 200) return undefined;
      const row = tokens.findByHash(hashToken(secret));
      if (!row || row.revokedAt !== null) return undefined;
      const t = now();
      if (row.expiresAt !== null && row.expiresAt <= t) return undefined;
      // Recording use at minute granularity keeps the hot path free of writes.
      if (row.lastUsedAt === null || t - row.lastUsedAt > 60_000) tokens.touch(row.id, t);
      return row;
    },
    allows(token: TokenRow | undefined, cacheName: string, permission: Permission): boolean {
      if (!token || token.permission === 'trigger' || permission === 'trigger') return false;
      return RANK[token.permission] >= RANK[permission] && cachePatternMatches(token.cachePattern, cacheName);
    },
    /** Whether the token may start evaluations of `project`: a trigger token for it, or admin on its cache. */
    mayTrigger(token: TokenRow | undefined, project: string, projectCache: string): boolean {
      if (!token) return false;
      if (token.permission === 'trigger') return token.project === project;
      return RANK[token.permission] >= RANK.admin && cachePatternMatches(token.cachePattern, projectCache);
    },
    /** The live token with this id (for browser sessions, which keep the id, never the secret). */
    byId(id: string): TokenRow | undefined {
      const row = tokens.get(id);
      if (!row || row.revokedAt !== null) return undefined;
      if (row.expiresAt !== null && row.expiresAt <= now()) return undefined;
      return row;
    },
    list(): TokenRow[] {
      return tokens.list();
    },
    revoke(id: string): void {
      const row = tokens.get(id);
      if (!row) throw new NarhubError('TOKEN_NOT_FOUND', `no token with id ${id}`);
      tokens.revoke(id);
    },
  };
}

export type TokenService = ReturnType<typeof createTokenService>;
