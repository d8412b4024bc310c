import { NarhubError } from '../errors.js';
import { COMPRESSION_EXTENSION, compressionsWithExtension } from '../io/compression.js';
import { formatHash, parseHash } from '../nix/hash.js';
import { NIX32_ALPHABET } from '../nix/nix32.js';

const NAME = new RegExp(`^([${NIX32_ALPHABET}]{52})\\.nar(\\.[a-z0-9]+)?$`);
/** `[.xz|.bz2|…]`: the extensions narhub takes, for messages. */
const EXTENSIONS = `[${[...new Set(Object.values(COMPRESSION_EXTENSION))].filter((e) => e !== '').join('|')}]`;

export interface NarFileName {
  fileName: string;
  /** The Nix32 SHA-256 of the file's bytes that the name claims. */
  fileHash: string;
  extension: string;
}

/**
 * Nix names every NAR file `<nix32 sha256 of the file>.nar<ext>` (docs/protocol.md,
 * Compression); narhub accepts only that, with the extension of a compression it takes.
 */
export function parseNarFileName(fileName: string): NarFileName {
  const m = NAME.exec(fileName);
  if (!m) {
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid NAR file name ${JSON.stringify(fileName.slice(0, 100))}: expected <nix32 sha256>.nar${EXTENSIONS}`,
    );
  }
  const extension = m[2] ?? '';
  if (compressionsWithExtension(extension).length === 0) {
    throw new NarhubError(
      'COMPRESSION_UNSUPPORTED',
      `NAR files ending in .nar${extension} are not accepted: ` +
        `narhub takes .nar${EXTENSIONS} (none, gzip, xz, bzip2, zstd, brotli)`,
    );
  }
  return { fileName, fileHash: m[1]!, extension };
}

/**
 * The name of a NAR file narhub compressed itself: `<nix32 sha256 of the uncompressed NAR>.nar.zst`.
 * Nix names files by the hash of the *file*, which is only known once compression has finished,
 * and a blob cannot be renamed; any name works for a narinfo `URL:`, and naming by NarHash lets
 * the name be checked (in `beforeCommit`) before the file appears under it. The same NAR gets
 * the same name whether it came as a native upload or from recompression, so they share a file.
 */
export function narHashFileName(narHash: string): string {
  const hash = parseHash(narHash);
  if (hash.algo !== 'sha256') throw new NarhubError('HASH_INVALID', `NarHash must be sha256, got ${hash.algo}`);
  return `${formatHash(hash, 'nix32').slice('sha256:'.length)}.nar.zst`;
}
