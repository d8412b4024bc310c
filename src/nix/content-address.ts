import { createHash } from 'node:crypto';
import { NarhubError } from '../errors.js';
import { formatHash, parseHash, type Hash, type HashAlgo } from './hash.js';
import { encodeNix32 } from './nix32.js';
import { quote } from './quote.js';
import { DEFAULT_STORE_DIR, parseStorePathBasename } from './store-path.js';

/**
 * How the content was hashed (Nix's ContentAddressMethod): `text` (a file's contents, sha256,
 * `builtins.toFile` and `.drv`s), `flat` (a single file's contents, `fixed:<algo>:`), `recursive`
 * (the NAR serialisation, `fixed:r:<algo>:`) and `git` (Nix ≥ 2.20's git tree hashing, which
 * narhub cannot check).
 */
export type ContentAddressMethod = 'text' | 'flat' | 'recursive' | 'git';

export interface ContentAddress {
  method: ContentAddressMethod;
  hash: Hash;
}

function invalid(text: string, why: string): NarhubError {
  return new NarhubError('HASH_INVALID', `invalid content address ${quote(text)}: ${why}`);
}

/**
 * Parses a `CA` value as Nix does (ContentAddress::parse): `text:sha256:<hash>` or
 * `fixed:[r:|git:]<algo>:<hash>`, the hash in base16, nix32 or base64 chosen by its length, and
 * never SRI (Nix reads it with parseNonSRIUnprefixed).
 */
export function parseContentAddress(text: string): ContentAddress {
  let method: ContentAddressMethod;
  let rest: string;
  if (text.startsWith('text:')) {
    method = 'text';
    rest = text.slice('text:'.length);
  } else if (text.startsWith('fixed:')) {
    rest = text.slice('fixed:'.length);
    if (rest.startsWith('r:')) [method, rest] = ['recursive', rest.slice(2)];
    else if (rest.startsWith('git:')) [method, rest] = ['git', rest.slice(4)];
    else method = 'flat';
  } else {
    throw invalid(text, 'expected "text:…" or "fixed:…"');
  }
  if (!/^[a-z0-9]+:/.test(rest)) throw invalid(text, `expected "<algo>:<hash>" after the method`);
  let hash: Hash;
  try {
    hash = parseHash(rest);
  } catch (err) {
    throw invalid(text, (err as Error).message);
  }
  if (method === 'text' && hash.algo !== 'sha256') throw invalid(text, `text must use sha256, not ${hash.algo}`);
  return { method, hash };
}

/** The `CA` value as Nix writes it: the hash in nix32. */
export function formatContentAddress(ca: ContentAddress): string {
  const prefix = { text: 'text:', flat: 'fixed:', recursive: 'fixed:r:', git: 'fixed:git:' }[ca.method];
  return `${prefix}${formatHash(ca.hash, 'nix32')}`;
}

/**
 * What must be hashed to check a content address: the whole NAR (`recursive`) or the contents of
 * its single regular file (`flat`, also for `text`), with which algorithm. Undefined when the
 * NarHash is that hash already (`fixed:r:sha256`).
 */
export function contentHashNeeded(ca: ContentAddress): { over: 'nar' | 'file'; algo: HashAlgo } | undefined {
  if (ca.method === 'recursive') return ca.hash.algo === 'sha256' ? undefined : { over: 'nar', algo: ca.hash.algo };
  return { over: 'file', algo: ca.hash.algo };
}

/**
 * Nix's makeStorePath: `<type>:sha256:<inner hex>:<storeDir>:<name>`, hashed with sha256, folded
 * to 20 bytes (compressHash) and written in nix32.
 */
export function makeStorePath(
  type: string,
  innerSha256: Uint8Array,
  name: string,
  storeDir = DEFAULT_STORE_DIR,
): string {
  const fingerprint = `${type}:sha256:${Buffer.from(innerSha256).toString('hex')}:${storeDir}:${name}`;
  const digest = createHash('sha256').update(fingerprint).digest();
  const folded = new Uint8Array(20);
  for (let i = 0; i < digest.length; i++) folded[i % 20] = folded[i % 20]! ^ digest[i]!;
  return `${storeDir}/${encodeNix32(folded)}-${name}`;
}

/** Nix's makeType: the type, then each reference's full path (sorted), then `self` if it refers to itself. */
function typeWithReferences(type: string, references: readonly string[], self: boolean, storeDir: string): string {
  const paths = [...new Set(references)].map((r) => `${storeDir}/${parseStorePathBasename(r).basename}`).sort();
  return [type, ...paths, ...(self ? ['self'] : [])].join(':');
}

/**
 * The store path a content address gives a path named `name` (Nix's makeFixedOutputPath and
 * makeTextPath): `references` are the other paths it refers to (basenames), `self` whether it
 * refers to itself. Throws STORE_PATH_INVALID with the reason when no such path can exist:
 * references on a fixed path other than `fixed:r:sha256`, a text path referring to itself, and
 * `git` (which narhub does not compute).
 */
export function contentAddressedStorePath(
  name: string,
  ca: ContentAddress,
  references: readonly string[],
  self: boolean,
  storeDir = DEFAULT_STORE_DIR,
): string {
  const refuse = (why: string) => new NarhubError('STORE_PATH_INVALID', why);
  switch (ca.method) {
    case 'text':
      if (self) throw refuse('a text content-addressed path cannot refer to itself');
      return makeStorePath(typeWithReferences('text', references, false, storeDir), ca.hash.digest, name, storeDir);
    case 'recursive':
      if (ca.hash.algo === 'sha256')
        return makeStorePath(typeWithReferences('source', references, self, storeDir), ca.hash.digest, name, storeDir);
      break;
    case 'flat':
      break;
    case 'git':
      throw refuse('git content addresses (fixed:git:) are not supported: narhub cannot check them');
  }
  if (references.length > 0 || self) {
    throw refuse(
      `a ${ca.method === 'flat' ? 'flat' : `recursive ${ca.hash.algo}`} fixed-output path cannot have references`,
    );
  }
  const prefix = ca.method === 'recursive' ? 'r:' : '';
  const inner = createHash('sha256')
    .update(`fixed:out:${prefix}${formatHash(ca.hash, 'base16')}:`)
    .digest();
  return makeStorePath('output:out', inner, name, storeDir);
}
