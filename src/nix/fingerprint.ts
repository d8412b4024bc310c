import { NarhubError } from '../errors.js';
import { formatHash, parseHash } from './hash.js';
import { DEFAULT_STORE_DIR, parseStorePath, parseStorePathBasename } from './store-path.js';

/**
 * The message a narinfo signature covers (docs/protocol.md, Signatures and keys):
 * `1;<storePath>;sha256:<nix32>;<narSize>;<sorted full reference paths, comma-joined>`.
 * The NarHash is re-rendered as nix32 whatever encoding the narinfo used, so a signature stays
 * valid across encodings. References are a set in Nix, so duplicates collapse here as well.
 */
export function narInfoFingerprint(
  storePath: string,
  narHash: string,
  narSize: number,
  references: string[],
  storeDir = DEFAULT_STORE_DIR,
): string {
  parseStorePath(storePath, storeDir);
  if (!Number.isSafeInteger(narSize) || narSize <= 0) {
    // Nix refuses too: a size of 0 means "unknown", and signing it would vouch for nothing.
    throw new NarhubError('NARINFO_INVALID', `cannot fingerprint ${storePath}: NarSize must be > 0, got ${narSize}`);
  }
  const hash = parseHash(narHash);
  if (hash.algo !== 'sha256') {
    throw new NarhubError('HASH_INVALID', `cannot fingerprint ${storePath}: NarHash must be sha256, got ${hash.algo}`);
  }
  const refs = new Set<string>();
  for (const ref of references) refs.add(`${storeDir}/${parseStorePathBasename(ref).basename}`);
  // Store paths are ASCII, so UTF-16 order equals Nix's byte order.
  const sortedRefs = [...refs].sort();
  return `1;${storePath};${formatHash(hash, 'nix32')};${narSize};${sortedRefs.join(',')}`;
}
