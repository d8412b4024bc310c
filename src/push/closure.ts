import { spawn } from 'node:child_process';
import { NarhubError } from '../errors.js';
import { parseHash } from '../nix/hash.js';
import { parseStorePath } from '../nix/store-path.js';

/** What a push needs to know about one store path, as `nix path-info --json` reports it. */
export interface PathInfo {
  path: string;
  narHash: string;
  narSize: number;
  /** Full store paths. */
  references: string[];
  deriver?: string | undefined;
  ca?: string | undefined;
  signatures: string[];
}

export interface NixCommands {
  /** Environment for the nix commands (NIX_CONF_DIR and the like); process.env when unset. */
  env?: NodeJS.ProcessEnv | undefined;
  nix?: string | undefined;
  nixStore?: string | undefined;
  /** The store to read from (`--store`, e.g. a chroot store); the machine's store when unset. */
  store?: string | undefined;
}

/** `--store STORE` when a store other than the machine's is meant. */
export const storeArgs = (nix: NixCommands): string[] => (nix.store && nix.store !== 'auto' ? ['--store', nix.store] : []);

/** Runs a command to completion, collecting stdout; rejects with its stderr on failure. */
export function runCommand(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(new NarhubError('BAD_REQUEST', `cannot run ${cmd}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new NarhubError('BAD_REQUEST', `${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${lastLines(err)}`));
    });
  });
}

function lastLines(text: string): string {
  const lines = text.trim().split('\n').filter((l) => l.trim() !== '');
  return lines.slice(-3).join(' / ') || 'no output';
}

/**
 * The closure of `paths` with each path's metadata, from `nix path-info --json -r`. Accepts both
 * shapes Nix has printed: an array of objects with `path` (Nix ≤ 2.18) and an object keyed by
 * path (2.19+); NarHash in any encoding (`sha256:` nix32 or SRI).
 */
export async function queryClosure(paths: string[], nix: NixCommands = {}): Promise<PathInfo[]> {
  const text = await runCommand(nix.nix ?? 'nix', ['--extra-experimental-features', 'nix-command', 'path-info', ...storeArgs(nix), '--json', '-r', ...paths], nix.env);
  return parsePathInfoJson(text);
}

export function parsePathInfoJson(text: string): PathInfo[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new NarhubError('BAD_REQUEST', 'nix path-info --json printed no JSON');
  }
  const items: [string | undefined, unknown][] = Array.isArray(raw)
    ? raw.map((v) => [undefined, v])
    : typeof raw === 'object' && raw !== null
      ? Object.entries(raw)
      : [];
  return items.map(([key, value]) => {
    const o = (value ?? {}) as Record<string, unknown>;
    const path = typeof o.path === 'string' ? o.path : key;
    if (typeof path !== 'string') throw new NarhubError('BAD_REQUEST', 'nix path-info --json: an entry has no path');
    if (o.valid === false) throw new NarhubError('BAD_REQUEST', `${path} is not valid in the local store`);
    parseStorePath(path);
    const narHash = o.narHash;
    const narSize = o.narSize;
    if (typeof narHash !== 'string' || typeof narSize !== 'number') throw new NarhubError('BAD_REQUEST', `nix path-info --json: ${path} lacks narHash or narSize`);
    parseHash(narHash);
    const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
    return {
      path,
      narHash,
      narSize,
      references: strings(o.references),
      deriver: typeof o.deriver === 'string' ? o.deriver : undefined,
      ca: typeof o.ca === 'string' ? o.ca : undefined,
      signatures: strings(o.signatures),
    };
  });
}
