import { isUtf8 } from 'node:buffer';

/**
 * The `.ls` NAR listing (docs/protocol.md, NAR listings): the tree of a NAR without file contents, with each regular
 * file's size and `narOffset` so a reader can range-request one file out of an uncompressed NAR.
 */
export type NarListingNode =
  | { type: 'regular'; size: number; executable?: true; narOffset: number }
  | { type: 'directory'; entries: Record<string, NarListingNode> }
  | { type: 'symlink'; target: string };

export interface NarListing {
  version: 1;
  root: NarListingNode;
}

/**
 * Entries objects have no prototype, so a file called `__proto__` or `constructor` is just a key.
 * Always create them here rather than with `{}`.
 */
export function createEntries(): Record<string, NarListingNode> {
  return Object.create(null) as Record<string, NarListingNode>;
}

/**
 * Names and symlink targets are raw bytes in a NAR. Policy: valid UTF-8 decodes as UTF-8 (so the
 * listing matches Nix 2.8 byte-for-byte); anything else decodes as latin1, one code point
 * U+0000–U+00FF per byte. That keeps the JSON valid for strict parsers (Nix 2.8 writes the raw
 * bytes, which they reject) and loses no information. The price: an invalid name can decode to
 * the same string as a valid sibling; `addEntry` then keeps the first one.
 */
export function decodeNarString(bytes: Uint8Array): string {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return isUtf8(buf) ? buf.toString('utf8') : buf.toString('latin1');
}

/** Adds an entry unless its decoded name is already taken (see `decodeNarString`). */
export function addEntry(entries: Record<string, NarListingNode>, name: string, node: NarListingNode): void {
  if (!Object.hasOwn(entries, name)) entries[name] = node;
}

/**
 * Compact JSON in Nix 2.8's shape: `version` first, keys in 2.8's order, `executable` only when
 * true, `narOffset` omitted when 0, entries sorted by code point (= the NAR's raw byte order for
 * UTF-8 names; plain object key order would put integer-like names first).
 */
export function formatListing(listing: NarListing): string {
  return `{"version":${listing.version},"root":${formatNode(listing.root)}}`;
}

function formatNode(node: NarListingNode): string {
  switch (node.type) {
    case 'regular':
      return (
        `{"type":"regular","size":${node.size}` +
        (node.executable === true ? ',"executable":true' : '') +
        (node.narOffset !== 0 ? `,"narOffset":${node.narOffset}` : '') +
        '}'
      );
    case 'symlink':
      return `{"type":"symlink","target":${jsonString(node.target)}}`;
    case 'directory': {
      const names = Object.keys(node.entries).sort(compareCodePoints);
      const parts = names.map((name) => `${jsonString(name)}:${formatNode(node.entries[name]!)}`);
      return `{"type":"directory","entries":{${parts.join(',')}}}`;
    }
  }
}

/**
 * Nix 2.8's escaping (libutil json.cc): `"` and `\` backslashed, \n \r \t short, other controls
 * as \u00xx, everything else verbatim. JSON.stringify differs only in using \b and \f.
 */
function jsonString(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c !== 0x22 && c !== 0x5c) continue;
    out += s.slice(start, i);
    start = i + 1;
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else out += `\\u${c.toString(16).padStart(4, '0')}`;
  }
  return `${out + s.slice(start)}"`;
}

/** Code point order, which equals UTF-8 byte order (UTF-16 code unit order does not). */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}
