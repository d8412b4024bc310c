/**
 * Strict standard base64 (RFC 4648 §4, padded). Node's own decoder silently skips junk, which
 * would let two different strings name the same hash or key; here only the canonical encoding
 * of some byte string is accepted.
 */
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Length of the padded base64 encoding of `byteLength` bytes. */
export function base64Length(byteLength: number): number {
  return Math.ceil(byteLength / 3) * 4;
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Decodes canonical padded base64, or returns `undefined` for anything else. */
export function decodeBase64Strict(text: string): Uint8Array | undefined {
  if (!BASE64_RE.test(text)) return undefined;
  const buf = Buffer.from(text, 'base64');
  // Rejects non-zero bits in the last character's unused low bits (e.g. "AB==" vs "AA==").
  if (buf.toString('base64') !== text) return undefined;
  // Copy out: small Buffers are views into a shared pool.
  return new Uint8Array(buf);
}
