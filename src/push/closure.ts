import { spawn } from 'node:child_process';
import { NarhubError } from '../errors.js';
import { parsePathInfoJson, type PathInfo } from '../nix/path-info.js';

export { parsePathInfoJson, type PathInfo };

export interface NixCommands {
  /** Environment for the nix commands (NIX_CONF_DIR and the like); process.env when unset. */
  env?: NodeJS.ProcessEnv | undefined;
  nix?: string | undefined;
  nixStore?: string | undefined;
  /** The store to read from (`--store`, e.g. a chroot store); the machine's store when unset. */
  store?: string | undefined;
}

/** `--store STORE` when a store other than the machine's is meant. */
export const storeArgs = (nix: NixCommands): string[] =>
  nix.store && nix.store !== 'auto' ? ['--store', nix.store] : [];

/** Runs a command to completion, collecting stdout; rejects with its stderr on failure. */
function runCommand(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(new NarhubError('BAD_REQUEST', `cannot run ${cmd}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else
        reject(
          new NarhubError(
            'BAD_REQUEST',
            `${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${lastLines(err)}`,
          ),
        );
    });
  });
}

function lastLines(text: string): string {
  const lines = text
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '');
  return lines.slice(-3).join(' / ') || 'no output';
}

/**
 * The closure of `paths` with each path's metadata, from `nix path-info --json -r`. Accepts both
 * shapes Nix has printed: an array of objects with `path` (Nix ≤ 2.18) and an object keyed by
 * path (2.19+); NarHash in any encoding (`sha256:` nix32 or SRI).
 */
export function queryClosure(paths: string[], nix: NixCommands = {}): Promise<PathInfo[]> {
  return pathInfo(['-r', ...paths], nix);
}

/** The metadata of `paths` themselves (`nix path-info --json`, no closure); all must be valid. */
export function queryPathInfos(paths: string[], nix: NixCommands = {}): Promise<PathInfo[]> {
  return pathInfo(paths, nix);
}

async function pathInfo(args: string[], nix: NixCommands): Promise<PathInfo[]> {
  const text = await runCommand(
    nix.nix ?? 'nix',
    ['--extra-experimental-features', 'nix-command', 'path-info', ...storeArgs(nix), '--json', ...args],
    nix.env,
  );
  return parsePathInfoJson(text);
}

/**
 * Which of `paths` are not valid in the store (collected since they were named, say), from
 * `nix-store --check-validity --print-invalid`, which, unlike `nix path-info`, never tries to
 * substitute them.
 */
export async function invalidPaths(paths: string[], nix: NixCommands = {}): Promise<Set<string>> {
  if (paths.length === 0) return new Set();
  const text = await runCommand(
    nix.nixStore ?? 'nix-store',
    [...storeArgs(nix), '--check-validity', '--print-invalid', ...paths],
    nix.env,
  );
  return new Set(text.split('\n').filter((l) => l !== ''));
}
