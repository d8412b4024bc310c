import { NarhubError } from '../../errors.js';

/**
 * The contents of a NAR that holds one regular file (what a `.drv` or any text file added to
 * the store becomes). Throws NAR_INVALID for anything else.
 */
export function regularFileOfNar(nar: Uint8Array): Buffer {
  const buf = Buffer.from(nar.buffer, nar.byteOffset, nar.byteLength);
  let pos = 0;
  const bytes = (): Buffer => {
    if (pos + 8 > buf.length) throw new NarhubError('NAR_INVALID', 'NAR ends early');
    const n = Number(buf.readBigUInt64LE(pos));
    pos += 8;
    if (pos + n > buf.length) throw new NarhubError('NAR_INVALID', 'NAR ends early');
    const out = buf.subarray(pos, pos + n);
    pos += (n + 7) & ~7;
    return out;
  };
  const token = (expected: string) => {
    const got = bytes().toString('latin1');
    if (got !== expected)
      throw new NarhubError('NAR_INVALID', `expected '${expected}' in the NAR, found '${got.slice(0, 40)}'`);
  };
  token('nix-archive-1');
  token('(');
  token('type');
  token('regular');
  let field = bytes().toString('latin1');
  if (field === 'executable') {
    token('');
    field = bytes().toString('latin1');
  }
  if (field !== 'contents') throw new NarhubError('NAR_INVALID', 'the NAR is not a single regular file');
  const contents = bytes();
  token(')');
  if (pos !== buf.length) throw new NarhubError('NAR_INVALID', 'trailing bytes after the NAR');
  return contents;
}
