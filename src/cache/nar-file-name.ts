import { NarhubError } from '../errors.js';
import { NIX32_ALPHABET } from '../nix/nix32.js';

/** File name extensions Nix gives each compression (docs/protocol.md, Compression); gzip and none share `.nar`. */
const EXTENSIONS = new Set(['', '.xz', '.bz2', '.zst', '.br', '.lz4', '.lzip']);
const NAME = new RegExp(`^([${NIX32_ALPHABET}]{52})\\.nar(\\.[a-z0-9]+)?$`);

export interface NarFileName {
  fileName: string;
  /** The Nix32 SHA-256 of the file's bytes that the name claims. */
  fileHash: string;
  extension: string;
}

/** Nix names every NAR file `<nix32 sha256 of the file>.nar<ext>`; narhub accepts only that. */
export function parseNarFileName(fileName: string): NarFileName {
  const m = NAME.exec(fileName);
  const extension = m?.[2] ?? '';
  if (!m || !EXTENSIONS.has(extension)) {
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid NAR file name ${JSON.stringify(fileName.slice(0, 100))}: expected <nix32 sha256>.nar[.xz|.zst|.bz2|.br]`,
    );
  }
  return { fileName, fileHash: m[1]!, extension };
}
