import { NarhubError } from '../errors.js';
import { quote } from './quote.js';

/**
 * Nix's "base32" (docs/protocol.md, Nix32). Not RFC 4648: the bytes are read as one little-endian integer and
 * written most-significant digit first, over an alphabet without e, o, u and t.
 */
export const NIX32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';

// Reverse lookup by char code; -1 marks characters outside the alphabet.
const DIGIT_OF = new Int8Array(128).fill(-1);
for (let i = 0; i < NIX32_ALPHABET.length; i++) DIGIT_OF[NIX32_ALPHABET.charCodeAt(i)] = i;

/** Characters needed for `byteLength` bytes: ceil(8n / 5). */
export function nix32Length(byteLength: number): number {
  if (!Number.isSafeInteger(byteLength) || byteLength < 0) {
    throw new RangeError(`nix32Length: invalid byte length ${byteLength}`);
  }
  return Math.ceil((byteLength * 8) / 5);
}

export function encodeNix32(bytes: Uint8Array): string {
  const len = nix32Length(bytes.length);
  let out = '';
  // Character k from the right holds bits 5k..5k+4 of the little-endian bit string.
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const lo = (bytes[i] ?? 0) >> j;
    const hi = i + 1 < bytes.length ? (bytes[i + 1] ?? 0) << (8 - j) : 0;
    out += NIX32_ALPHABET[(lo | hi) & 0x1f];
  }
  return out;
}

export function decodeNix32(text: string, byteLength: number): Uint8Array {
  const expected = nix32Length(byteLength);
  if (text.length !== expected) {
    throw new NarhubError(
      'HASH_INVALID',
      `nix32 string for ${byteLength} bytes must be ${expected} characters, got ${text.length}`,
    );
  }
  const out = new Uint8Array(byteLength);
  for (let n = 0; n < text.length; n++) {
    const pos = text.length - 1 - n;
    const code = text.charCodeAt(pos);
    const digit = code < 128 ? (DIGIT_OF[code] ?? -1) : -1;
    if (digit < 0) {
      throw new NarhubError(
        'HASH_INVALID',
        `invalid nix32 character ${quote(text.charAt(pos))} at position ${pos} (alphabet is ${NIX32_ALPHABET})`,
      );
    }
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i] = (out[i] ?? 0) | ((digit << j) & 0xff);
    const carry = digit >> (8 - j);
    if (i + 1 < byteLength) {
      out[i + 1] = (out[i + 1] ?? 0) | carry;
    } else if (carry !== 0) {
      // The encoding has more bits than the digest; the surplus must be zero (Nix rejects it too).
      throw new NarhubError(
        'HASH_INVALID',
        `nix32 string ${quote(text)} does not fit in ${byteLength} bytes (surplus high bits set)`,
      );
    }
  }
  return out;
}
