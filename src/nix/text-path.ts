import { createHash } from 'node:crypto';
import { encodeNix32 } from './nix32.js';
import { DEFAULT_STORE_DIR } from './store-path.js';

/**
 * The store path Nix gives a text file it adds with references (`builtins.toFile`, every
 * `.drv`): `makeTextPath` of Nix's store API. The path is a function of the text, so a text
 * that yields the path it came under is that path's content, whoever passed it on.
 *
 * `references` are full store paths; their order does not matter (Nix sorts the set).
 */
export function textStorePath(
  name: string,
  text: Uint8Array | string,
  references: readonly string[],
  storeDir = DEFAULT_STORE_DIR,
): string {
  const inner = createHash('sha256').update(text).digest('hex');
  const type = ['text', ...[...new Set(references)].sort()].join(':');
  const fingerprint = `${type}:sha256:${inner}:${storeDir}:${name}`;
  const digest = createHash('sha256').update(fingerprint).digest();
  // Nix's compressHash: the 32-byte digest XOR-folded into 20.
  const folded = new Uint8Array(20);
  for (let i = 0; i < digest.length; i++) folded[i % 20] = folded[i % 20]! ^ digest[i]!;
  return `${storeDir}/${encodeNix32(folded)}-${name}`;
}
