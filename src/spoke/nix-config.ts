import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isChrootStore } from './options.js';

/**
 * The spoke's own Nix configuration. The machine's nix.conf is never touched: every setting is
 * passed to the spoke's `nix-store --serve` processes on the command line with `--option`. Nix
 * itself never talks to the cache (the spoke fetches inputs and pushes outputs), so it needs no
 * token. A private temporary directory (removed at exit) holds the build logs being collected.
 */
export interface SpokeNixConfig {
  /** Private directory (0700): build logs being collected, Nix's cache dir. */
  readonly dir: string;
  /** Environment for every Nix command. */
  readonly env: NodeJS.ProcessEnv;
  /** The store builds run in (`auto` or a chroot directory). */
  readonly store: string;
  /** `--option …` arguments for the `nix-store --serve` processes. */
  serveOptions(): string[];
  /** Removes the directory. */
  dispose(): Promise<void>;
}

/** What a chroot store's builds need from the host so `/bin/sh` builders can run. */
const CHROOT_SANDBOX_PATHS = ['/bin', '/lib', '/lib64', '/usr'];

export async function createSpokeNixConfig(opts: {
  store: string;
  features: readonly string[];
}): Promise<SpokeNixConfig> {
  const dir = await mkdtemp(join(tmpdir(), 'narhub-spoke-'));
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: join(dir, 'cache') };
  const sandboxPaths = CHROOT_SANDBOX_PATHS.filter((p) => existsSync(p)).join(' ');
  return {
    dir,
    env,
    store: opts.store,
    serveOptions: () => [
      // Build here, never on the machine's remote builders.
      '--option',
      'builders',
      '',
      // What the spoke offers (--features), Nix must accept too: a derivation's
      // requiredSystemFeatures are checked against `system-features`.
      ...(opts.features.length > 0 ? ['--option', 'extra-system-features', opts.features.join(' ')] : []),
      ...(isChrootStore(opts.store) ? ['--option', 'sandbox-paths', sandboxPaths] : []),
    ],
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}
