import { hashesEqual, parseHash } from '../nix/hash.js';
import type { NarInfo } from '../nix/narinfo.js';

/**
 * The NAR file a narinfo's `URL` names in a cache narhub serves: `nar/<file>`, relative to the
 * cache, with nothing else (no query, no other directory); undefined for any other URL.
 */
export function narFileOfUrl(url: string): string | undefined {
  return /^nar\/([^/?#]+)$/.exec(url)?.[1];
}

/**
 * Whether two narinfos of one path say the same about it: the store path, the NAR (NarHash,
 * NarSize) and its references, which its signatures cover.
 */
export function sameContent(a: NarInfo, b: NarInfo): boolean {
  return (
    a.storePath === b.storePath &&
    hashesEqual(parseHash(a.narHash), parseHash(b.narHash)) &&
    a.narSize === b.narSize &&
    sameSet(a.references, b.references)
  );
}

function sameSet(a: string[], b: string[]): boolean {
  const sa = new Set(a);
  const sb = new Set(b);
  return sa.size === sb.size && [...sa].every((x) => sb.has(x));
}
