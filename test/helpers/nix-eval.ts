// Evaluates the repository's .nix test harnesses with Debian's nix-instantiate, and names the
// checkout of nixpkgs' lib the harnesses of test/nixpkgs-lib need.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './repo.js';

const run = promisify(execFile);

/**
 * The checkout of nixpkgs' lib (nix-community/nixpkgs.lib, or nixpkgs itself) that the suite in
 * test/nixpkgs-lib evaluates with, from NIXPKGS_LIB; without it those tests fail, never skip.
 * They are a suite of their own, outside `npm test`, because CI cannot give them one: it reaches
 * the npm registry and Debian's archive only, and neither ships nixpkgs' lib/ (Debian's nix-bin
 * carries the Nix client alone). A stand-in lib would not be honest: the module system's merge,
 * priority and type-check semantics are what these tests check.
 */
export function nixpkgsLib(): string {
  const dir = process.env.NIXPKGS_LIB;
  if (!dir) throw new Error('NIXPKGS_LIB must name a checkout of nix-community/nixpkgs.lib');
  return dir;
}

/** `nix-instantiate --eval --strict --json` of a file under test/integration/nixos, parsed. */
export async function evalNixJson<T>(
  harness: string,
  args: Record<string, string> = {},
): Promise<{ value: T; text: string }> {
  const argv = ['--eval', '--strict', '--json', join(repoRoot(), 'test', 'integration', 'nixos', harness)];
  for (const [name, value] of Object.entries(args)) argv.push('--argstr', name, value);
  const { stdout } = await run('nix-instantiate', argv, {
    env: { ...process.env, NIX_PATH: '' },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { value: JSON.parse(stdout) as T, text: stdout };
}
