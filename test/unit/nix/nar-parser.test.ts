import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NarhubError } from '../../../src/errors.js';
import { formatListing, type NarListingNode } from '../../../src/nix/nar/listing.js';
import { NarParser, type NarSummary } from '../../../src/nix/nar/nar-parser.js';
import { narFromTree, type NarTree } from '../../../src/nix/nar/nar-writer.js';
import { encodeNix32 } from '../../../src/nix/nix32.js';

// ---- helpers: NARs built token by token, so tests can break any rule ----

type Tok = string | Uint8Array;

/** str(x): u64 LE length, bytes, zero padding. */
function str(x: Tok): Buffer {
  const bytes = typeof x === 'string' ? Buffer.from(x) : Buffer.from(x);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([len, bytes, Buffer.alloc((8 - (bytes.length % 8)) % 8)]);
}
const nar = (...toks: Tok[]): Buffer => Buffer.concat([str('nix-archive-1'), ...toks.map(str)]);
const file = (contents: Tok = 'x'): Tok[] => ['(', 'type', 'regular', 'contents', contents, ')'];
const exe = (contents: Tok = 'x'): Tok[] => ['(', 'type', 'regular', 'executable', '', 'contents', contents, ')'];
const link = (target: Tok): Tok[] => ['(', 'type', 'symlink', 'target', target, ')'];
const entry = (name: Tok, node: Tok[]): Tok[] => ['entry', '(', 'name', name, 'node', ...node, ')'];
const dir = (...entries: Tok[][]): Tok[] => ['(', 'type', 'directory', ...entries.flat(), ')'];

/** A regular file whose path has `depth` components: d/d/…/f. */
function nested(depth: number): Tok[] {
  let node = file();
  for (let i = 0; i < depth; i++) node = dir(entry(i === 0 ? 'f' : 'd', node));
  return node;
}

function parseChunks(chunks: Iterable<Uint8Array>, options?: { maxDepth?: number }): NarSummary {
  const p = new NarParser(options);
  for (const c of chunks) p.update(c);
  return p.finish();
}
const parse = (bytes: Uint8Array, options?: { maxDepth?: number }): NarSummary => parseChunks([bytes], options);

function* split(bytes: Uint8Array, cuts: number[]): Generator<Uint8Array> {
  let prev = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
    yield bytes.subarray(prev, cut);
    prev = cut;
  }
  yield bytes.subarray(prev);
}

function* bytewise(bytes: Uint8Array): Generator<Uint8Array> {
  for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
}

/** Parses and returns the error message, or the summary when the NAR is valid. */
function outcome(chunks: Iterable<Uint8Array>, options?: { maxDepth?: number }): string | NarSummary {
  try {
    return parseChunks(chunks, options);
  } catch (err) {
    assert.ok(err instanceof NarhubError, `expected NarhubError, got ${String(err)}`);
    assert.equal(err.code, 'NAR_INVALID');
    return err.message;
  }
}

/**
 * Asserts the NAR is rejected with a message matching `pattern`, identically whether fed whole
 * or byte by byte, and — the streaming promise — by the update() of byte `detectAt` (default:
 * the offset in the message) rather than at the end.
 */
function rejects(bytes: Uint8Array, pattern: RegExp, options: { maxDepth?: number; detectAt?: number } = {}): string {
  const whole = outcome([bytes], options);
  assert.equal(typeof whole, 'string', 'expected the NAR to be rejected');
  assert.match(whole as string, pattern);
  const offset = Number(/at byte (\d+)$/.exec(whole as string)?.[1]);
  assert.ok(Number.isInteger(offset), `message has an offset: ${String(whole)}`);

  const p = new NarParser(options);
  let failedAt = -1;
  let message = '';
  for (let i = 0; i < bytes.length && failedAt < 0; i++) {
    try {
      p.update(bytes.subarray(i, i + 1));
    } catch (err) {
      failedAt = i;
      message = (err as Error).message;
    }
  }
  if (failedAt < 0) {
    try {
      p.finish();
    } catch (err) {
      failedAt = bytes.length;
      message = (err as Error).message;
    }
  }
  assert.equal(message, whole, 'same error whatever the chunking');
  if (options.detectAt !== undefined) assert.equal(failedAt, options.detectAt, 'detected as soon as possible');
  return whole as string;
}

const SPEC_EXAMPLE_HEX =
  '0d00000000000000' +
  '6e69782d61726368' +
  '6976652d31000000' +
  '0100000000000000' +
  '2800000000000000' +
  '0400000000000000' +
  '7479706500000000' +
  '0700000000000000' +
  '726567756c617200' +
  '0800000000000000' +
  '636f6e74656e7473' +
  '0600000000000000' +
  '68656c6c6f0a0000' +
  '0100000000000000' +
  '2900000000000000';
const SPEC_EXAMPLE = Buffer.from(SPEC_EXAMPLE_HEX, 'hex');

// ---- tests ----

describe('NarParser: the NAR of a file `hello\\n`', () => {
  it('hashes, sizes and lists the 120-byte hello NAR', () => {
    assert.equal(SPEC_EXAMPLE.length, 120);
    const s = parse(SPEC_EXAMPLE);
    assert.equal(s.narHash, 'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw');
    assert.equal(s.narSize, 120);
    assert.equal(formatListing(s.listing!), '{"version":1,"root":{"type":"regular","size":6,"narOffset":96}}');
  });

  it('gives the same result one byte at a time', () => {
    assert.deepEqual(parseChunks(bytewise(SPEC_EXAMPLE)), parse(SPEC_EXAMPLE));
  });

  it('is what narFromTree writes', () => {
    const written = Buffer.concat([...narFromTree({ type: 'regular', contents: Buffer.from('hello\n') })]);
    assert.deepEqual(written, SPEC_EXAMPLE);
  });

  it('finish() is idempotent and update() after it is a programming error', () => {
    const p = new NarParser();
    p.update(SPEC_EXAMPLE);
    assert.equal(p.finish(), p.finish());
    assert.throws(() => p.update(new Uint8Array(1)), /after finish/);
  });

  it('can skip the listing', () => {
    const p = new NarParser({ listing: false });
    p.update(SPEC_EXAMPLE);
    const s = p.finish();
    assert.equal(s.listing, undefined);
    assert.equal(s.narSize, 120);
  });
});

describe('NarParser: listing', () => {
  it('records types, sizes, executable bits, targets and narOffsets', () => {
    const bytes = nar(...dir(entry('a', exe('#!')), entry('b', file('')), entry('c', link('a')), entry('d', dir())));
    const s = parse(bytes);
    const root = s.listing!.root as Extract<NarListingNode, { type: 'directory' }>;
    assert.equal(Object.getPrototypeOf(root.entries), null);
    const a = root.entries.a as Extract<NarListingNode, { type: 'regular' }>;
    assert.deepEqual({ ...a }, { type: 'regular', size: 2, narOffset: a.narOffset, executable: true });
    assert.equal(bytes.subarray(a.narOffset - 8, a.narOffset).readBigUInt64LE(), 2n);
    assert.equal(bytes.subarray(a.narOffset, a.narOffset + 2).toString(), '#!');
    assert.equal(formatListing({ version: 1, root: root.entries.b! }).includes('"size":0,'), true);
    assert.deepEqual({ ...root.entries.c }, { type: 'symlink', target: 'a' });
    assert.equal(
      formatListing({ version: 1, root: root.entries.d! }),
      '{"version":1,"root":{"type":"directory","entries":{}}}',
    );
  });

  it('keeps names like __proto__ as plain keys', () => {
    const s = parse(nar(...dir(entry('__proto__', file()), entry('constructor', file()))));
    const root = s.listing!.root as Extract<NarListingNode, { type: 'directory' }>;
    assert.deepEqual(Object.keys(root.entries), ['__proto__', 'constructor']);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('NarParser: rejects every rule of docs/protocol.md', () => {
  it('1. magic', () => {
    rejects(
      Buffer.concat([str('nix-archive-2'), ...file().map(str)]),
      /^input doesn't look like a Nix archive at byte 0$/,
    );
    // A wrong length is caught at the length field already.
    rejects(Buffer.concat([str('nix-archive-10'), ...file().map(str)]), /look like a Nix archive at byte 0$/, {
      detectAt: 7,
    });
    rejects(Buffer.from('<html><body>not a nar</body></html>'), /look like a Nix archive at byte 0/, { detectAt: 7 });
  });

  it('2. non-zero padding', () => {
    for (const at of [21, 102, 103, 113]) {
      const bad = Buffer.from(SPEC_EXAMPLE);
      bad[at] = 1;
      rejects(bad, new RegExp(`^non-zero padding at byte ${at}$`), { detectAt: at });
    }
  });

  it('3. exact token grammar and order', () => {
    rejects(nar('(', 'typ', 'regular', 'contents', 'x', ')'), /expected 'type', got a 3-byte string at byte 40$/);
    rejects(nar('(', 'tyqe', 'regular', 'contents', 'x', ')'), /expected 'type', got 'tyqe' at byte 40$/);
    rejects(nar('(', 'type', 'fifo', ')'), /expected 'regular' or 'symlink' or 'directory'/);
    rejects(nar('[', 'type', 'regular', 'contents', 'x', ')'), /expected '\('/);
    // contents before executable (2.25+ order), missing contents, repeated contents.
    rejects(nar('(', 'type', 'regular', 'contents', 'x', 'executable', '', ')'), /expected '\)', got a 10-byte string/);
    rejects(nar('(', 'type', 'regular', ')'), /expected 'executable' or 'contents', got a 1-byte string/);
    rejects(nar('(', 'type', 'regular', 'executable', '', ')'), /expected 'contents', got a 1-byte string/);
    rejects(nar('(', 'type', 'regular', 'contents', 'x', 'contents', 'y', ')'), /expected '\)', got a 8-byte string/);
    rejects(nar('(', 'type', 'symlink', 'target', 'a', 'target', 'b', ')'), /expected '\)'/);
    rejects(nar('(', 'type', 'directory', 'entry', 'name', 'a', ')'), /expected '\(', got a 4-byte string/);
    rejects(nar('(', 'type', 'directory', 'entry', '(', 'node', ...file(), ')', ')'), /expected 'name', got 'node'/);
    rejects(
      nar('(', 'type', 'directory', 'entry', '(', 'name', 'a', ...file(), ')', ')'),
      /expected 'node', got a 1-byte string/,
    );
    rejects(nar(...dir(), ')'), /trailing bytes/);
    rejects(nar(...dir(['entry', '(', 'name', 'a', 'node', ...file(), 'x']), ')'), /expected '\)', got 'x'/);
    rejects(nar('(', 'type', 'directory', 'entries', ')'), /expected 'entry' or '\)'/);
  });

  it('3. caps tag strings (no tag is longer than 13 bytes)', () => {
    // The length alone is enough to reject: detected at the last byte of the length field.
    const long = nar('(', 'type', 'x'.repeat(33));
    rejects(long, /expected 'regular' or 'symlink' or 'directory', got a 33-byte string at byte 56$/, { detectAt: 63 });
    const huge = Buffer.concat([nar('('), Buffer.from('ffffffffffffffff', 'hex')]);
    rejects(huge, /length field too large at byte 40$/, { detectAt: 47 });
  });

  it('4. the executable marker value must be empty', () => {
    rejects(
      nar('(', 'type', 'regular', 'executable', 'yes', 'contents', 'x', ')'),
      /'executable' marker value must be empty at byte 96$/,
      {
        detectAt: 103,
      },
    );
  });

  it('5. entry names: non-empty, not . or .., no / or NUL, ≤ 255 bytes', () => {
    rejects(nar(...dir(entry('', file()))), /empty entry name at byte 128$/, { detectAt: 135 });
    rejects(nar(...dir(entry('.', file()))), /invalid entry name '\.' at byte 128$/);
    rejects(nar(...dir(entry('..', file()))), /invalid entry name '\.\.' at byte 128$/);
    // NUL and '/' are reported at the offending byte, as it arrives.
    rejects(nar(...dir(entry('a/b', file()))), /'\/' in entry name at byte 137$/, { detectAt: 137 });
    rejects(nar(...dir(entry('ab\0', file()))), /NUL byte in entry name at byte 138$/, { detectAt: 138 });
    rejects(nar(...dir(entry('/', file()))), /'\/' in entry name/);
    assert.equal(parse(nar(...dir(entry('x'.repeat(255), file())))).narSize > 0, true);
    rejects(nar(...dir(entry('x'.repeat(256), file()))), /entry name longer than 255 bytes at byte 128$/, {
      detectAt: 135,
    });
    // Names like '...' and '.a' are fine.
    parse(nar(...dir(entry('...', file()), entry('.a', file()))));
  });

  it('5. entries strictly ascending by unsigned bytes', () => {
    rejects(nar(...dir(entry('b', file()), entry('a', file()))), /NAR directory is not sorted: 'a' after 'b'/);
    rejects(nar(...dir(entry('a', file()), entry('a', file()))), /not sorted/);
    rejects(nar(...dir(entry('ab', file()), entry('a', file()))), /not sorted/);
    parse(nar(...dir(entry('a', file()), entry('ab', file()), entry('b', file()))));
    // Unsigned: 0xff sorts after 'z' (a signed compare would put it first).
    parse(nar(...dir(entry('z', file()), entry(Uint8Array.of(0xff), file()))));
    rejects(nar(...dir(entry(Uint8Array.of(0xff), file()), entry('z', file()))), /not sorted/);
    // Upper case before lower case, as memcmp says.
    parse(nar(...dir(entry('B', file()), entry('a', file()))));
    // The order is per directory: a nested directory starts afresh.
    parse(nar(...dir(entry('m', dir(entry('z', file()))), entry('n', dir(entry('a', file()))))));
  });

  it('6. symlink targets: non-empty, no NUL, ≤ 4095 bytes', () => {
    rejects(nar(...link('')), /empty symlink target at byte 88$/, { detectAt: 95 });
    rejects(nar(...link('a\0b')), /NUL byte in symlink target at byte 97$/, { detectAt: 97 });
    assert.equal((parse(nar(...link('t'.repeat(4095)))).listing!.root as { target: string }).target.length, 4095);
    rejects(nar(...link('t'.repeat(4096))), /symlink target longer than 4095 bytes at byte 88$/, { detectAt: 95 });
  });

  it('7. nesting depth (default: a path of 64 components is too deep)', () => {
    parse(nar(...nested(63)));
    rejects(nar(...nested(64)), /nesting exceeds maximum depth of 64/);
    parse(nar(...nested(1)), { maxDepth: 2 });
    rejects(nar(...nested(2)), /nesting exceeds maximum depth of 2/, { maxDepth: 2 });
    rejects(nar(...nested(1)), /nesting exceeds maximum depth of 1/, { maxDepth: 1 });
  });

  it('8. truncation and trailing bytes', () => {
    for (const cut of [0, 1, 8, 23, 24, 60, 100, 111, 112, 119]) {
      rejects(SPEC_EXAMPLE.subarray(0, cut), new RegExp(`^unexpected end of archive at byte ${cut}$`), {
        detectAt: cut,
      });
    }
    rejects(
      Buffer.concat([SPEC_EXAMPLE, Buffer.alloc(1)]),
      /^trailing bytes after the end of the archive at byte 120$/,
      { detectAt: 120 },
    );
    rejects(Buffer.concat([SPEC_EXAMPLE, SPEC_EXAMPLE]), /trailing bytes .* at byte 120$/);
  });

  it('stays failed after an error', () => {
    const p = new NarParser();
    assert.throws(() => p.update(Buffer.from('garbage!')), NarhubError);
    assert.throws(() => p.update(SPEC_EXAMPLE), /look like a Nix archive/);
    assert.throws(() => p.finish(), /look like a Nix archive/);
  });
});

// ---- properties ----

const validName = fc
  .string({ unit: 'binary', minLength: 1, maxLength: 6 })
  .filter((s) => s !== '.' && s !== '..' && !s.includes('/') && !s.includes('\0') && Buffer.from(s).toString() === s);

const treeArb: fc.Arbitrary<NarTree> = fc.letrec<{ tree: NarTree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({
      type: fc.constant('regular' as const),
      contents: fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        fc.integer({ min: 0, max: 70_000 }).map((n) => new Uint8Array(n).fill(n & 0xff)),
      ),
      executable: fc.boolean(),
    }),
    fc.record({
      type: fc.constant('symlink' as const),
      target: fc
        .string({ unit: 'binary', minLength: 1, maxLength: 20 })
        .filter((s) => !s.includes('\0') && Buffer.from(s).toString() === s),
    }),
    fc.uniqueArray(fc.tuple(validName, tie('tree')), { maxLength: 5, selector: ([name]) => name }).map((pairs) => {
      const entries = Object.create(null) as Record<string, NarTree>;
      for (const [name, node] of pairs) entries[name] = node;
      return { type: 'directory' as const, entries };
    }),
  ),
})).tree;

/** Every regular file in the listing points at its own bytes in the NAR. */
function checkOffsets(tree: NarTree, node: NarListingNode, bytes: Uint8Array): void {
  assert.equal(node.type, tree.type);
  if (tree.type === 'regular' && node.type === 'regular') {
    assert.equal(node.size, tree.contents.length);
    assert.equal(node.executable, tree.executable === true ? true : undefined);
    assert.ok(Buffer.from(bytes.subarray(node.narOffset, node.narOffset + node.size)).equals(tree.contents));
  } else if (tree.type === 'symlink' && node.type === 'symlink') {
    assert.equal(node.target, tree.target);
  } else if (tree.type === 'directory' && node.type === 'directory') {
    assert.deepEqual(Object.keys(node.entries).sort(), Object.keys(tree.entries).sort());
    for (const name of Object.keys(tree.entries)) checkOffsets(tree.entries[name]!, node.entries[name]!, bytes);
  }
}

describe('NarParser: split-point properties', () => {
  it('any chunking gives the sha256 of the bytes, their count and a correct listing', () => {
    fc.assert(
      fc.property(treeArb, fc.array(fc.nat(), { maxLength: 12 }), (tree, rawCuts) => {
        const bytes = Buffer.concat([...narFromTree(tree)]);
        const cuts = rawCuts.map((c) => c % (bytes.length + 1));
        const s = parseChunks(split(bytes, cuts));
        assert.equal(s.narHash, `sha256:${encodeNix32(createHash('sha256').update(bytes).digest())}`);
        assert.equal(s.narSize, bytes.length);
        checkOffsets(tree, s.listing!.root, bytes);
        assert.equal(formatListing(s.listing!), formatListing(parse(bytes).listing!));
      }),
      { numRuns: 300 },
    );
  });

  it('the writer’s own chunks and single bytes agree with one-shot parsing', () => {
    fc.assert(
      fc.property(treeArb, (tree) => {
        const bytes = Buffer.concat([...narFromTree(tree)]);
        if (bytes.length > 4096) return;
        const whole = parse(bytes);
        assert.deepEqual(parseChunks(narFromTree(tree)), whole);
        assert.deepEqual(parseChunks(bytewise(bytes)), whole);
      }),
      { numRuns: 100 },
    );
  });

  it('a corrupted NAR gets the same verdict and message whatever the chunking', () => {
    fc.assert(
      fc.property(
        treeArb,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.boolean(),
        (tree, where, xor, rawCuts, truncate) => {
          const bytes = Buffer.concat([...narFromTree(tree)]);
          const at = where % bytes.length;
          const bad = truncate ? bytes.subarray(0, at) : Buffer.from(bytes);
          if (!truncate) bad[at] = bad[at]! ^ xor;
          const cuts = rawCuts.map((c) => c % (bad.length + 1));
          const a = outcome([bad]);
          const b = outcome(split(bad, cuts));
          assert.deepEqual(b, a);
          if (truncate) assert.equal(typeof a, 'string');
          if (typeof a !== 'string') {
            // Accepted only if the flipped byte was file contents: the hash must follow the bytes.
            assert.equal(a.narHash, `sha256:${encodeNix32(createHash('sha256').update(bad).digest())}`);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('NarParser: the listing of a huge tree', () => {
  const five = nar(
    ...dir(entry('a', file()), entry('b', file('yy')), entry('c', dir(entry('d', link('a')))), entry('e', exe())),
  );
  const parseWith = (bytes: Buffer, maxListingEntries: number) => {
    const p = new NarParser({ maxListingEntries });
    p.update(bytes);
    return p.finish();
  };

  it('is given up past maxListingEntries, while hash and size stay exact', () => {
    const full = parseWith(five, 6); // the root directory and its 5 entries
    assert.ok(full.listing, 'six entries fit');
    const capped = parseWith(five, 5);
    assert.equal(capped.listing, undefined);
    assert.equal(capped.narHash, full.narHash);
    assert.equal(capped.narSize, five.length);
    assert.equal(capped.narHash, `sha256:${encodeNix32(createHash('sha256').update(five).digest())}`);
  });

  it('still enforces every rule after giving the listing up', () => {
    const unsorted = nar(...dir(entry('a', file()), entry('b', file()), entry('c', file()), entry('b2', file())));
    const p = new NarParser({ maxListingEntries: 2 });
    assert.throws(() => p.update(unsorted), /NAR directory is not sorted: 'b2' after 'c'/);
  });
});
