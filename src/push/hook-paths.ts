import { readFileSync } from 'node:fs';
import { NarhubError } from '../errors.js';
import { outputPathsOf, parseDerivation } from '../nix/derivation.js';

/**
 * The paths a post-build-hook was called for, from its environment: `$OUT_PATHS` (space
 * separated), or, when Nix left that empty as Nix 2.8.0 does (NixOS/nix#6446), the outputs that
 * `$DRV_PATH` names. Read from the `.drv` itself rather than by asking Nix, which the hook must
 * not wait for. Floating content-addressed outputs have no path in the `.drv`: they are left out
 * and said so in `skipped`.
 */
export function pathsFromHookEnvironment(
  env: NodeJS.ProcessEnv,
  readDerivation: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): { paths: string[]; skipped: string[] } {
  const outPaths = (env.OUT_PATHS ?? '').split(' ').filter((p) => p !== '');
  if (outPaths.length > 0 || !env.DRV_PATH) return { paths: outPaths, skipped: [] };
  let text: string;
  try {
    text = readDerivation(env.DRV_PATH);
  } catch (err) {
    throw new NarhubError(
      'BAD_REQUEST',
      `$OUT_PATHS is empty and the derivation $DRV_PATH (${env.DRV_PATH}) cannot be read: ${(err as Error).message}`,
    );
  }
  const drv = parseDerivation(text);
  const outputs = outputPathsOf(drv);
  return { paths: Object.values(outputs), skipped: Object.keys(drv.outputs).filter((name) => !(name in outputs)) };
}
