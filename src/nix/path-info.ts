import { NarhubError } from '../errors.js';
import { parseHash } from './hash.js';
import { parseStorePath } from './store-path.js';

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
  /** Nix built this path in this store (its database's `ultimate` flag); false or unknown otherwise. */
  ultimate?: boolean;
}

/**
 * Parses `nix path-info --json`: both shapes Nix has printed (an array of objects with `path`, Nix
 * ≤ 2.18, and an object keyed by path, 2.19+), NarHash in any encoding.
 */
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
    if (typeof narHash !== 'string' || typeof narSize !== 'number')
      throw new NarhubError('BAD_REQUEST', `nix path-info --json: ${path} lacks narHash or narSize`);
    parseHash(narHash);
    const strings = (v: unknown): string[] =>
      Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
    return {
      path,
      narHash,
      narSize,
      references: strings(o.references),
      deriver: typeof o.deriver === 'string' ? o.deriver : undefined,
      ca: typeof o.ca === 'string' ? o.ca : undefined,
      signatures: strings(o.signatures),
      ultimate: o.ultimate === true,
    };
  });
}
