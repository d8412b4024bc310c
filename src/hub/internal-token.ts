import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TokenService } from '../cache/tokens.js';

/**
 * The hub's own write token, with which it uploads derivations to its caches through the same
 * HTTP protocol as everyone else. The secret lives in `<dataDir>/hub-token` (0600) and Nix reads
 * it from `<dataDir>/hub-netrc` (0600); both are recreated if the token was revoked.
 */
export function ensureInternalToken(tokens: TokenService, dataDir: string, host: string): { netrcFile: string } {
  const tokenFile = join(dataDir, 'hub-token');
  const netrcFile = join(dataDir, 'hub-netrc');
  let secret: string | undefined;
  try {
    secret = readFileSync(tokenFile, 'utf8').trim();
  } catch {
    secret = undefined;
  }
  const row = secret ? tokens.authenticate(secret) : undefined;
  if (!secret || !row || !tokens.allows(row, 'any-cache', 'write') || row.cachePattern !== '*') {
    secret = tokens.create({ cachePattern: '*', permission: 'write', name: 'narhub hub (internal uploads)' }).token;
    writeFileSync(tokenFile, secret + '\n', { mode: 0o600 });
    chmodSync(tokenFile, 0o600);
  }
  writeFileSync(netrcFile, `machine ${host} login narhub password ${secret}\n`, { mode: 0o600 });
  chmodSync(netrcFile, 0o600);
  return { netrcFile };
}
