import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  addEntry,
  createEntries,
  decodeNarString,
  formatListing,
  type NarListingNode,
} from '../../../src/nix/nar/listing.js';

function dirOf(pairs: [string, NarListingNode][]): NarListingNode {
  const entries = createEntries();
  for (const [name, node] of pairs) addEntry(entries, name, node);
  return { type: 'directory', entries };
}
const reg = (size: number, narOffset: number): NarListingNode => ({ type: 'regular', size, narOffset });

describe('formatListing', () => {
  it('writes Nix 2.8’s compact shape: version first, executable only when true', () => {
    const root = dirOf([
      ['a', { type: 'regular', size: 1, executable: true, narOffset: 232 }],
      ['b', reg(0, 400)],
      ['l', { type: 'symlink', target: 'a' }],
      ['d', dirOf([])],
    ]);
    assert.equal(
      formatListing({ version: 1, root }),
      '{"version":1,"root":{"type":"directory","entries":{' +
        '"a":{"type":"regular","size":1,"executable":true,"narOffset":232},' +
        '"b":{"type":"regular","size":0,"narOffset":400},' +
        '"d":{"type":"directory","entries":{}},' +
        '"l":{"type":"symlink","target":"a"}}}}',
    );
  });

  it('omits narOffset 0, as Nix does', () => {
    assert.equal(formatListing({ version: 1, root: reg(3, 0) }), '{"version":1,"root":{"type":"regular","size":3}}');
  });

  it('escapes like Nix 2.8: \\" \\\\ \\n \\r \\t, other controls as \\u00xx, the rest verbatim', () => {
    const name = 'q"b\\n\nr\rt\tc\x01\x08\x0c\x1f\x7fé😀';
    const out = formatListing({ version: 1, root: { type: 'symlink', target: name } });
    assert.equal(
      out,
      '{"version":1,"root":{"type":"symlink","target":"q\\"b\\\\n\\nr\\rt\\tc\\u0001\\u0008\\u000c\\u001f\x7fé😀"}}',
    );
    assert.equal((JSON.parse(out) as { root: { target: string } }).root.target, name);
  });

  it('orders entries by raw UTF-8 bytes, not JS key order or UTF-16 order', () => {
    // Integer-like keys would come first in a plain object; U+1F600 is a surrogate pair in UTF-16
    // (0xD83D < 0xFF61) but sorts after U+FF61 by code point / UTF-8 bytes.
    const root = dirOf([
      ['10', reg(1, 8)],
      ['9', reg(1, 16)],
      ['B', reg(1, 24)],
      ['a', reg(1, 32)],
      ['\uff61', reg(1, 40)],
      ['😀', reg(1, 48)],
    ]);
    // Read the keys off the text: JSON.parse would reorder integer-like keys again.
    const keys = [...formatListing({ version: 1, root }).matchAll(/"([^"]+)":\{"type"/g)].map((m) => m[1]).slice(1);
    assert.deepEqual(keys, ['10', '9', 'B', 'a', '\uff61', '😀']);
  });

  it('is safe with names like __proto__', () => {
    const root = dirOf([
      ['__proto__', reg(1, 8)],
      ['constructor', reg(1, 16)],
      ['hasOwnProperty', reg(1, 24)],
    ]);
    const out = formatListing({ version: 1, root });
    assert.equal(
      out,
      '{"version":1,"root":{"type":"directory","entries":{"__proto__":{"type":"regular","size":1,"narOffset":8},' +
        '"constructor":{"type":"regular","size":1,"narOffset":16},' +
        '"hasOwnProperty":{"type":"regular","size":1,"narOffset":24}}}}',
    );
    assert.equal(Object.getPrototypeOf({}), Object.prototype);
  });
});

describe('decodeNarString (policy for non-UTF-8 names)', () => {
  it('decodes valid UTF-8 as UTF-8', () => {
    assert.equal(decodeNarString(Buffer.from('héllo 😀')), 'héllo 😀');
  });

  it('decodes anything else as latin1, one code point per byte, losing nothing', () => {
    const raw = Uint8Array.of(0x61, 0xff, 0xc3, 0x28);
    const s = decodeNarString(raw);
    assert.equal(s, 'a\u00ff\u00c3(');
    assert.deepEqual(Buffer.from(s, 'latin1'), Buffer.from(raw));
  });

  it('keeps the first entry when two names decode alike', () => {
    // C3 A9 FF is not UTF-8, so it reads as latin1 'Ã©ÿ': the same string as the valid UTF-8 name.
    const valid = decodeNarString(Buffer.from('Ã©ÿ'));
    const invalid = decodeNarString(Uint8Array.of(0xc3, 0xa9, 0xff));
    assert.equal(valid, invalid);
    const entries = createEntries();
    addEntry(entries, valid, reg(1, 8));
    addEntry(entries, invalid, reg(2, 16));
    assert.deepEqual(Object.keys(entries), ['Ã©ÿ']);
    assert.equal((entries['Ã©ÿ'] as { size: number }).size, 1);
  });
});
