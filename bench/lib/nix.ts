// The real Nix client (Debian's Nix 2.8) with a configuration of its own: nothing reaches for
// cache.nixos.org, and every operation can get a fresh narinfo disk cache.
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execOk, rmTree, type ExecOptions, type ExecResult } from './proc.js';

export interface NixEnv {
  dir: string;
  confDir: string;
  env: NodeJS.ProcessEnv;
  /**
   * Runs a Nix command (rejecting unless it exits 0) with a fresh XDG_CACHE_HOME, so no
   * narinfo or nix-cache-info remembered by an earlier run changes what this one does.
   */
  run(cmd: string, args: string[], opts?: ExecOptions): Promise<ExecResult>;
}

export interface NetrcEntry {
  host: string;
  password: string;
}

export async function createNixEnv(dir: string, opts: { netrc?: NetrcEntry[] } = {}): Promise<NixEnv> {
  const confDir = join(dir, 'conf');
  await mkdir(confDir, { recursive: true });
  const conf = [
    'experimental-features = nix-command flakes',
    'sandbox = false',
    'build-users-group =',
    'substituters =',
    'download-attempts = 2',
  ];
  if (opts.netrc !== undefined) {
    const netrc = join(confDir, 'netrc');
    await writeFile(netrc, opts.netrc.map((e) => `machine ${e.host} login bench password ${e.password}\n`).join(''), {
      mode: 0o600,
    });
    conf.push(`netrc-file = ${netrc}`);
  }
  await writeFile(join(confDir, 'nix.conf'), `${conf.join('\n')}\n`);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NIX_CONF_DIR: confDir,
    XDG_CONFIG_HOME: join(dir, 'xdg-config'),
    XDG_DATA_HOME: join(dir, 'xdg-data'),
  };
  for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY']) delete env[k];
  const caches = join(dir, 'xdg-cache');
  await mkdir(caches, { recursive: true });
  return {
    dir,
    confDir,
    env,
    async run(cmd, args, runOpts = {}) {
      const cacheHome = await mkdtemp(join(caches, 'c-'));
      return execOk(cmd, args, { ...runOpts, env: { ...env, ...runOpts.env, XDG_CACHE_HOME: cacheHome } });
    },
  };
}

/**
 * A substituter of `path` into fresh chroot stores under `storesDir`: each call runs
 * `nix copy --from CACHE --to <new store>` with signatures checked (trusting only `publicKey`),
 * removes the store and resolves with the copy's seconds.
 */
export function chrootSubstituter(
  nix: NixEnv,
  storesDir: string,
  path: string,
): (cacheUrl: string, publicKey: string) => Promise<number> {
  let count = 0;
  return async (cacheUrl, publicKey) => {
    const store = join(storesDir, `store-${++count}`);
    try {
      const res = await nix.run(
        'nix',
        ['copy', '--from', cacheUrl, '--to', store, path, '--option', 'trusted-public-keys', publicKey],
        { timeoutMs: 30 * 60_000 },
      );
      return res.seconds;
    } finally {
      await rmTree(store);
    }
  };
}

export interface PathInfo {
  path: string;
  narSize: number;
  narHash: string;
}

export async function pathInfo(nix: NixEnv, path: string): Promise<PathInfo> {
  const res = await nix.run('nix', ['path-info', '--json', path]);
  const [info] = JSON.parse(res.stdout) as PathInfo[];
  if (info === undefined) throw new Error(`nix path-info printed nothing for ${path}`);
  return { path: info.path, narSize: info.narSize, narHash: info.narHash };
}

/** Signing key pair for a `file://` cache Nix writes itself. */
export async function generateKey(nix: NixEnv, name: string): Promise<{ secretKeyFile: string; publicKey: string }> {
  const secretKeyFile = join(nix.dir, `${name}.sk`);
  const publicKeyFile = join(nix.dir, `${name}.pk`);
  await nix.run('nix-store', ['--generate-binary-cache-key', name, secretKeyFile, publicKeyFile]);
  return { secretKeyFile, publicKey: (await readFile(publicKeyFile, 'utf8')).trim() };
}

/** The 32-character hash part of a store path. */
export function hashPart(storePath: string): string {
  return storePath.slice('/nix/store/'.length, '/nix/store/'.length + 32);
}
