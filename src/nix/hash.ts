import { createHash } from 'node:crypto';
import { NarhubError } from '../errors.js';
import { base64Length, decodeBase64Strict, encodeBase64 } from './base64.js';
import { decodeNix32, encodeNix32, nix32Length } from './nix32.js';
import { quote } from './quote.js';

export type HashAlgo = 'md5' | 'sha1' | 'sha256' | 'sha512';

export interface Hash {
  algo: HashAlgo;
  digest: Uint8Array;
}

const DIGEST_SIZE: Record<HashAlgo, number> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };

function isHashAlgo(text: string): text is HashAlgo {
  return Object.hasOwn(DIGEST_SIZE, text);
}

function invalid(text: string, why: string): NarhubError {
  return new NarhubError('HASH_INVALID', `invalid hash ${quote(text)}: ${why}`);
}

/**
 * Parses a prefixed hash the way Nix does (docs/protocol.md, Prefixed hashes): `<algo>:` followed by base16, nix32 or
 * base64 chosen by length, or SRI `<algo>-<base64>`. A bare digest is rejected: Nix treats an
 * unprefixed NarHash as corrupt.
 */
export function parseHash(text: string): Hash {
  // Like Nix, the first ':' wins; only without one is the string read as SRI.
  let sep = text.indexOf(':');
  const sri = sep < 0;
  if (sri) sep = text.indexOf('-');
  if (sep < 0) {
    throw invalid(text, 'missing algorithm prefix (expected "<algo>:<hash>" or SRI "<algo>-<base64>")');
  }
  const algoText = text.slice(0, sep);
  if (!isHashAlgo(algoText)) {
    throw invalid(text, `unknown hash algorithm ${quote(algoText)} (expected md5, sha1, sha256 or sha512)`);
  }
  const algo = algoText;
  const size = DIGEST_SIZE[algo];
  const rest = text.slice(sep + 1);

  if (sri) {
    const digest = decodeBase64Strict(rest);
    if (digest === undefined) throw invalid(text, 'SRI hash is not valid padded base64');
    if (digest.length !== size) {
      throw invalid(text, `SRI ${algo} digest must be ${size} bytes, got ${digest.length}`);
    }
    return { algo, digest };
  }

  if (rest.length === size * 2) {
    if (!/^[0-9a-fA-F]*$/.test(rest)) throw invalid(text, 'not valid base16');
    return { algo, digest: new Uint8Array(Buffer.from(rest, 'hex')) };
  }
  if (rest.length === nix32Length(size)) {
    try {
      return { algo, digest: decodeNix32(rest, size) };
    } catch (err) {
      throw new NarhubError('HASH_INVALID', `invalid hash ${quote(text)}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  if (rest.length === base64Length(size)) {
    const digest = decodeBase64Strict(rest);
    if (digest === undefined || digest.length !== size) throw invalid(text, 'not valid base64');
    return { algo, digest };
  }
  throw invalid(
    text,
    `wrong length ${rest.length} for ${algo} (expected ${size * 2} base16, ${nix32Length(size)} nix32 ` +
      `or ${base64Length(size)} base64 characters)`,
  );
}

export function formatHash(hash: Hash, encoding: 'nix32' | 'base16' | 'base64' | 'sri' = 'nix32'): string {
  switch (encoding) {
    case 'nix32':
      return `${hash.algo}:${encodeNix32(hash.digest)}`;
    case 'base16':
      return `${hash.algo}:${Buffer.from(hash.digest).toString('hex')}`;
    case 'base64':
      return `${hash.algo}:${encodeBase64(hash.digest)}`;
    case 'sri':
      return `${hash.algo}-${encodeBase64(hash.digest)}`;
  }
}

/** Wraps a raw 32-byte SHA-256 digest, e.g. from a streaming `createHash('sha256')`. */
export function sha256Hash(digest: Uint8Array): Hash {
  if (digest.length !== 32) {
    throw new NarhubError('HASH_INVALID', `sha256 digest must be 32 bytes, got ${digest.length}`);
  }
  return { algo: 'sha256', digest: new Uint8Array(digest) };
}

/** SHA-256 of in-memory bytes or a string (UTF-8). For small inputs such as fingerprints. */
export function sha256Of(data: Uint8Array | string): Hash {
  return sha256Hash(createHash('sha256').update(data).digest());
}

export function hashesEqual(a: Hash, b: Hash): boolean {
  return a.algo === b.algo && Buffer.from(a.digest).equals(Buffer.from(b.digest));
}
