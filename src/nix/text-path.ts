import { createHash } from 'node:crypto';
import { makeStorePath } from './content-address.js';
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
  const inner = createHash('sha256').update(text).digest();
  const type = ['text', ...[...new Set(references)].sort()].join(':');
  return makeStorePath(type, inner, name, storeDir);
}
