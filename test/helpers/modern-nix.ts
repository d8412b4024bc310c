// The current Nix clients from Debian's archive that scripts/setup-modern-nix.sh unpacks beside
// Debian 12's Nix 2.8: trixie's nix-bin (2.26) and sid's (the newest Debian ships).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type ModernSuite = 'trixie' | 'sid';

export interface NixClient {
  suite: ModernSuite;
  /** Holds only Nix's commands (nix, nix-store, nix-build…); goes first on PATH. */
  binDir: string;
  /** What `nix --version` says, e.g. 2.26.3. */
  version: string;
  /** The Debian package's version, e.g. 2.26.3+dfsg-1. */
  debVersion: string;
}

const ROOT = process.env.NARHUB_MODERN_NIX_DIR ?? '/var/lib/narhub-test';

/** The unpacked client of `suite`; throws, saying how to install it, when it is not there or does not run. */
export function modernNix(suite: ModernSuite): NixClient {
  const dir = join(ROOT, `nix-${suite}`);
  const binDir = join(dir, 'bin');
  const howTo = `run scripts/setup-modern-nix.sh (as .ci/run does)`;
  if (!existsSync(join(binDir, 'nix'))) throw new Error(`no Nix from Debian ${suite} in ${dir}: ${howTo}`);
  const res = spawnSync(join(binDir, 'nix'), ['--version'], { encoding: 'utf8' });
  const version = /\(Nix\) (\d+\.\d+\.\d+\S*)/.exec(res.stdout ?? '')?.[1];
  if (res.status !== 0 || version === undefined) {
    throw new Error(`${binDir}/nix --version failed (${res.status}): ${res.stdout}${res.stderr} (${howTo})`);
  }
  const debVersion = readFileSync(join(dir, 'nix-bin.version'), 'utf8').trim();
  return { suite, binDir, version, debVersion };
}

/** Whether `client` is Nix `minor` (e.g. "2.28") or newer. */
export function atLeast(client: NixClient, minor: string): boolean {
  const [a, b] = client.version.split('.').map(Number) as [number, number];
  const [x, y] = minor.split('.').map(Number) as [number, number];
  return a > x || (a === x && b >= y);
}
