/** A single, satisfiable byte range, inclusive on both ends. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Parses a Range header against a body of `size` bytes (RFC 9110 §14). Returns `undefined`
 * when the header should be ignored (absent, not bytes, or several ranges: answering those with
 * the whole body is allowed), `'unsatisfiable'` for a 416, or the range.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*([^,]*)$/i.exec(header);
  if (!m) return undefined;
  const spec = m[1]!.trim();
  const parts = /^(\d*)\s*-\s*(\d*)$/.exec(spec);
  if (!parts || (parts[1] === '' && parts[2] === '')) return 'unsatisfiable';
  if (parts[1] === '') {
    const suffix = Number(parts[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(parts[1]);
  const end = parts[2] === '' ? size - 1 : Math.min(Number(parts[2]), size - 1);
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}
