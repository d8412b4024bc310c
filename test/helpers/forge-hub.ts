// What the forge end-to-end tests share: a flake of checks in a git repository to commit to,
// narhub's config pointing its forge client at a local stand-in, and the hub with a spoke.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, hubApi, startSpoke, waitFor } from './hub.js';
import { createNixEnv } from './nix.js';
import { startRedis } from './redis.js';
import { runCliOk, startServer } from './server.js';
import type { Cleanup } from './tmp.js';

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

const SYSTEM = 'x86_64-linux';

/**
 * A flake whose `checks.x86_64-linux` is `checks`, a Nix expression over `mk NAME SCRIPT DEPS`: a
 * derivation running SCRIPT with /bin/sh (DEPS: extra attributes, such as other checks it needs),
 * which first prints `TAG-log NONCE NAME`, so a test can find its log. `bindings` are further
 * `let` bindings the checks may use.
 */
export function checksFlake(o: { nonce: string; tag: string; checks: string; bindings?: string }): string {
  return `{
  outputs = { self }:
    let
      mk = name: script: deps: derivation ({
        inherit name;
        system = "${SYSTEM}";
        builder = "/bin/sh";
        args = [ "-c" "export PATH=/usr/bin:/bin; echo ${o.tag}-log ${o.nonce} \${name}; \${script}" ];
      } // deps);
      ${o.bindings ?? ''}
    in { checks.${SYSTEM} = ${o.checks}; };
}
`;
}

/** A git repository `dir/repo` whose branch main has one commit, of `flake` as flake.nix. */
export async function flakeRepo(dir: string, flake: string): Promise<{ repo: string; sha: string }> {
  const repo = join(dir, 'repo');
  execFileSync('git', ['init', '-q', '-b', 'main', repo]);
  await writeFile(join(repo, 'flake.nix'), flake);
  git(repo, 'add', 'flake.nix');
  git(repo, 'commit', '-q', '-m', 'first');
  return { repo, sha: git(repo, 'rev-parse', 'HEAD') };
}

/**
 * narhub serve as a forge's CI: the hub on a Redis of its own, with the forge config, and one
 * spoke named `spokeId`; with the admin token's API and CLI, and a wait for an evaluation's end.
 */
export async function startForgeHub(t: Cleanup, o: { configFile: string; spokeId: string }) {
  const redis = await startRedis(t);
  const hubNix = await createNixEnv(t);
  const server = await startServer(t, {
    args: ['--listen', `127.0.0.1:${await freePort()}`, '--redis-url', redis.url, '--config', o.configFile],
    env: hubNix.env,
  });
  const { url, adminToken: token } = server;
  const api = hubApi(() => url, token);
  const spokeNix = await createNixEnv(t);
  startSpoke(t, {
    id: o.spokeId,
    hubUrl: url,
    redisUrl: redis.url,
    token,
    store: spokeNix.freshPath('store'),
    env: spokeNix.env,
  });
  return {
    url,
    token,
    dataDir: server.dataDir,
    api,
    cli: (args: string[]) => runCliOk([...args, '--server', url, '--token', token], { timeoutMs: 60_000 }),
    /** The evaluation once it has ended (succeeded, failed or cancelled), as the API shows it. */
    evaluationEnd: (id: number) =>
      waitFor(
        `evaluation ${id} to end`,
        async () => {
          const e = await api.get(`/evaluations/${id}`);
          return ['succeeded', 'failed', 'cancelled'].includes(e.status) ? e : undefined;
        },
        240_000,
      ),
  };
}
