import { readFileSync } from 'node:fs';
import { defaultNetrcFiles, netrcCredentials } from '../push/netrc.js';
import { UsageError } from './usage-error.js';

export interface PushAuthFlags {
  token?: string | undefined;
  'token-file'?: string | undefined;
  netrc?: string | undefined;
}

/**
 * The Authorization header of the push commands: `--token`, else `--token-file` (a daemon's
 * secret, e.g. a systemd credential: read once, never printed), else `$NARHUB_TOKEN`, else the
 * password netrc has for the cache's host, as Nix would find it. Undefined for a public cache
 * that takes anonymous writes (none do by default: the server then answers 401).
 */
export function pushAuthorization(
  flags: PushAuthFlags,
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (flags.token !== undefined && flags['token-file'] !== undefined)
    throw new UsageError('give --token or --token-file, not both');
  let token = flags.token;
  if (flags['token-file'] !== undefined) {
    try {
      token = readFileSync(flags['token-file'], 'utf8').trim();
    } catch (err) {
      throw new UsageError(`--token-file: ${(err as Error).message}`);
    }
    if (token === '') throw new UsageError(`--token-file ${flags['token-file']} is empty`);
  }
  token ??= env.NARHUB_TOKEN;
  if (token) {
    if (/\s/.test(token)) throw new UsageError('the token must not contain white space');
    return `Bearer ${token}`;
  }
  const files = flags.netrc ? [flags.netrc] : defaultNetrcFiles(env);
  const creds = netrcCredentials(host, files, flags.netrc !== undefined);
  return creds ? `Basic ${Buffer.from(`${creds.login}:${creds.password}`).toString('base64')}` : undefined;
}
