// What the forge end-to-end tests share: a git repository to commit to, and narhub's config
// pointing its forge client at a local stand-in.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Runs git in `dir` as a fixed author, returning its trimmed output. */
export function git(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], {
    encoding: 'utf8',
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@example.org',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@example.org',
    },
  }).trim();
}

/**
 * Writes narhub's config for a forge at `apiUrl` (a token file, a fresh webhook secret, requests
 * paced 5 ms apart) with `extra` keys of its `github` object, and returns the file and the secret.
 */
export async function writeForgeConfig(
  dir: string,
  apiUrl: string,
  extra: Record<string, unknown> = {},
): Promise<{ configFile: string; secret: string }> {
  const secret = randomBytes(16).toString('hex');
  await writeFile(join(dir, 'webhook-secret'), secret);
  await writeFile(join(dir, 'forge-token'), 'standin-token');
  const configFile = join(dir, 'narhub.json');
  const github = {
    apiUrl,
    tokenFile: join(dir, 'forge-token'),
    webhookSecretFile: join(dir, 'webhook-secret'),
    minRequestInterval: 5,
    ...extra,
  };
  await writeFile(configFile, JSON.stringify({ github }));
  return { configFile, secret };
}
