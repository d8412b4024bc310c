import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isChrootStore } from './options.js';

/**
 * The spoke's own Nix configuration. The machine's nix.conf is never touched: every setting a
 * job needs is passed on the command line with `--option`, and the one secret (the token) goes
 * to a `netrc` file (mode 0600) in a private temporary directory that is removed at exit. Nix's
 * narinfo disk cache also lives there, and is bypassed (TTL 0): Nix remembers the narinfo it
 * uploaded without the cache's signature, and 404s for an hour, and either would break
 * substitution of a path this spoke (or another) pushed a moment ago.
 */
export interface SpokeNixConfig {
  /** Private directory (0700): netrc, Nix's cache dir, build logs being collected. */
  readonly dir: string;
  /** Environment for every Nix command. */
  readonly env: NodeJS.ProcessEnv;
  /** The store builds run in (`auto` or a chroot directory). */
  readonly store: string;
  /** `--option …` arguments for a command that talks to `cacheUrl`. */
  options(cacheUrl: string, trustedPublicKeys: readonly string[]): string[];
  /** Extra arguments for builds: the spoke's features, and sandbox paths for chroot stores. */
  buildOptions(): string[];
  /** Removes the directory (and the token with it). */
  dispose(): Promise<void>;
}

/** What a chroot store's builds need from the host so `/bin/sh` builders can run. */
const CHROOT_SANDBOX_PATHS = ['/bin', '/lib', '/lib64', '/usr'];

export async function createSpokeNixConfig(opts: { hubUrl: string; token: string; store: string; features: readonly string[] }): Promise<SpokeNixConfig> {
  const dir = await mkdtemp(join(tmpdir(), 'narhub-spoke-'));
  const netrc = join(dir, 'netrc');
  // netrc matches the host only (not the port); Nix sends it as HTTP Basic auth.
  const host = new URL(opts.hubUrl).hostname;
  await writeFile(netrc, `machine ${host} login narhub password ${opts.token}\n`, { mode: 0o600 });
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: join(dir, 'cache') };
  const sandboxPaths = CHROOT_SANDBOX_PATHS.filter((p) => existsSync(p)).join(' ');
  return {
    dir,
    env,
    store: opts.store,
    options: (cacheUrl, trustedPublicKeys) => [
      '--option', 'extra-experimental-features', 'nix-command',
      '--option', 'netrc-file', netrc,
      '--option', 'substituters', cacheUrl,
      '--option', 'trusted-public-keys', trustedPublicKeys.join(' '),
      '--option', 'narinfo-cache-positive-ttl', '0',
      '--option', 'narinfo-cache-negative-ttl', '0',
      '--option', 'connect-timeout', '30',
      // Build here, never on the machine's remote builders.
      '--option', 'builders', '',
    ],
    buildOptions: () => [
      // What the spoke offers (--features), Nix must accept too: a derivation's
      // requiredSystemFeatures are checked against `system-features`.
      ...(opts.features.length > 0 ? ['--option', 'extra-system-features', opts.features.join(' ')] : []),
      ...(isChrootStore(opts.store) ? ['--option', 'sandbox-paths', sandboxPaths] : []),
    ],
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}
