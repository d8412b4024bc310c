import { createHash, randomBytes } from 'node:crypto';
import type { SessionsRepo } from '../db/sessions-repo.js';
import type { TokenRow, TokenService } from './tokens.js';

const SESSION_PREFIX = 'nhs_';
const hash = (secret: string) => createHash('sha256').update(secret).digest('hex');

/**
 * Browser sessions for the web UI: a login with a narhub token hands out a random session
 * secret (the cookie); the database keeps its SHA-256 and the token's id, never the token. A
 * session lives as long as its token: revoking or expiring the token ends it at the next request.
 */
export function createSessionService(deps: { sessions: SessionsRepo; tokens: TokenService }) {
  return {
    /** A new session for a presented token, or undefined when the token is not live. */
    login(token: string, ttlMs: number): { secret: string; token: TokenRow } | undefined {
      const row = deps.tokens.authenticate(token);
      if (!row) return undefined;
      const secret = SESSION_PREFIX + randomBytes(32).toString('base64url');
      const expires = row.expiresAt === null ? Date.now() + ttlMs : Math.min(row.expiresAt, Date.now() + ttlMs);
      deps.sessions.insert(hash(secret), row.id, expires);
      return { secret, token: row };
    },
    /** The live token behind a session cookie. */
    token(secret: string | undefined): TokenRow | undefined {
      if (!secret?.startsWith(SESSION_PREFIX) || secret.length > 100) return undefined;
      const id = deps.sessions.tokenId(hash(secret));
      return id === undefined ? undefined : deps.tokens.byId(id);
    },
    logout(secret: string | undefined): void {
      if (secret) deps.sessions.delete(hash(secret));
    },
  };
}
