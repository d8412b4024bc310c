// Property tests of narhub's parsers of hostile input: whatever the bytes, each parser either
// returns a value that formats back to what it read, or throws narhub's own error (which HTTP turns
// into a 4xx with a reason); never another exception, never a hang. `npm run fuzz` runs them long.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseConfig } from '../../../src/config/load.js';
import { isNarhubError } from '../../../src/errors.js';
import { type Derivation, parseDerivation } from '../../../src/nix/derivation.js';
import { formatListing, type NarListingNode } from '../../../src/nix/nar/listing.js';
import { NarParser } from '../../../src/nix/nar/nar-parser.js';
import { narFromTree, type NarTree } from '../../../src/nix/nar/nar-writer.js';
import { formatNarInfo, type NarInfo, parseNarInfo } from '../../../src/nix/narinfo.js';
import { encodeNix32 } from '../../../src/nix/nix32.js';
import { parseNetrc } from '../../../src/push/netrc.js';
import { fuzzRuns } from '../../helpers/fuzz.js';

const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz';
const NAME_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?=';

/** fast-check builds objects without a prototype; compare values only. */
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

/** Passes if `run` returns, or throws narhub's own error; anything else fails the property. */
function onlyNarhubErrors<T>(run: () => T): T | undefined {
  try {
    return run();
  } catch (err) {
    if (isNarhubError(err)) return undefined;
    throw err;
  }
}

/** A valid text, then bytes flipped, deleted, inserted or duplicated at random places. */
function mutated(valid: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const edit = fc.tuple(fc.nat(), fc.constantFrom('flip', 'delete', 'insert', 'dup'), fc.string({ maxLength: 4 }));
  return fc.tuple(valid, fc.array(edit, { minLength: 1, maxLength: 4 })).map(([text, edits]) => {
    let s = text;
    for (const [at, kind, extra] of edits) {
      const i = s.length === 0 ? 0 : at % s.length;
      if (kind === 'flip') s = s.slice(0, i) + String.fromCharCode((s.charCodeAt(i) || 0) ^ 0x20) + s.slice(i + 1);
      else if (kind === 'delete') s = s.slice(0, i) + s.slice(i + 1 + (at % 7));
      else if (kind === 'insert') s = s.slice(0, i) + extra + s.slice(i);
      else s = s.slice(0, i) + s.slice(i, i + 20) + s.slice(i);
    }
    return s;
  });
}

// Narinfo ----------------------------------------------------------------------------------------

const hashPart = fc.string({ unit: fc.constantFrom(...NIX32), minLength: 32, maxLength: 32 });
const storeName = fc
  .string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 40 })
  .filter((n) => n !== '.' && n !== '..' && !n.startsWith('.-') && !n.startsWith('..-'));
const basename = fc.tuple(hashPart, storeName).map(([h, n]) => `${h}-${n}`);
const sha256 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => `sha256:${encodeNix32(b)}`);
const sig = fc
  .tuple(fc.stringMatching(/^[a-z][a-z0-9.-]{0,20}$/), fc.uint8Array({ minLength: 64, maxLength: 64 }))
  .map(([name, bytes]) => `${name}:${Buffer.from(bytes).toString('base64')}`);

const narInfo: fc.Arbitrary<NarInfo> = fc
  .record({
    base: basename,
    compression: fc.constantFrom('none', 'xz', 'bzip2', 'zstd', 'gzip', 'br'),
    fileHash: fc.option(sha256, { nil: undefined }),
    fileSize: fc.option(fc.integer({ min: 1, max: 2 ** 40 }), { nil: undefined }),
    narHash: sha256,
    narSize: fc.integer({ min: 1, max: 2 ** 40 }),
    references: fc.uniqueArray(basename, { maxLength: 6 }),
    deriver: fc.option(
      basename.map((b) => `${b}.drv`),
      { nil: undefined },
    ),
    sigs: fc.array(sig, { maxLength: 3 }),
  })
  .map((r) => {
    const info: NarInfo = {
      storePath: `/nix/store/${r.base}`,
      url: `nar/${r.narHash.slice(7)}.nar`,
      compression: r.compression,
      narHash: r.narHash,
      narSize: r.narSize,
      references: r.references,
      sigs: r.sigs,
    };
    if (r.fileHash !== undefined) {
      info.fileHash = r.fileHash;
      info.fileSize = r.fileSize ?? 1;
    }
    if (r.deriver !== undefined) info.deriver = r.deriver;
    return info;
  });

describe('narinfo parser', () => {
  it('reads back every narinfo narhub formats, and formats it the same again', () => {
    fc.assert(
      fc.property(narInfo, (info) => {
        const text = formatNarInfo(info);
        const parsed = parseNarInfo(text);
        assert.equal(parsed.storePath, info.storePath);
        assert.equal(parsed.narHash, info.narHash);
        assert.equal(parsed.narSize, info.narSize);
        assert.deepEqual([...parsed.references].sort(), [...info.references].sort());
        assert.deepEqual([...parsed.sigs].sort(), [...info.sigs].sort());
        assert.equal(parsed.deriver, info.deriver);
        assert.equal(formatNarInfo(parsed), text);
      }),
      fuzzRuns(300),
    );
  });

  it('answers any mangled narinfo with a value that round-trips, or its own error', () => {
    fc.assert(
      fc.property(fc.oneof(mutated(narInfo.map((i) => formatNarInfo(i))), fc.string({ maxLength: 400 })), (text) => {
        const parsed = onlyNarhubErrors(() => parseNarInfo(text));
        if (parsed === undefined) return;
        // narhub's text of what it read is a fixed point: it reads back the same, and formats the same.
        const text2 = formatNarInfo(parsed);
        const again = parseNarInfo(text2);
        assert.equal(formatNarInfo(again), text2);
        for (const key of ['storePath', 'url', 'compression', 'narHash', 'narSize', 'deriver', 'ca'] as const)
          assert.deepEqual(again[key], parsed[key], key);
        assert.deepEqual([...again.sigs].sort(), [...parsed.sigs].sort());
        assert.deepEqual(new Set(again.references), new Set(parsed.references));
      }),
      fuzzRuns(500),
    );
  });
});

// NAR ----------------------------------------------------------------------------------------------

const entryName = fc
  .string({ unit: fc.constantFrom(...'abcXYZ019._-é'), minLength: 1, maxLength: 8 })
  .filter((n) => n !== '.' && n !== '..');
const narTree: fc.Arbitrary<NarTree> = fc.letrec<{ node: NarTree }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({
      type: fc.constant('regular' as const),
      contents: fc.uint8Array({ maxLength: 300 }),
      executable: fc.boolean(),
    }),
    fc.record({
      type: fc.constant('symlink' as const),
      target: fc.string({ unit: fc.constantFrom(...'ab/.-x'), minLength: 1, maxLength: 30 }),
    }),
    fc
      .uniqueArray(fc.tuple(entryName, tie('node')), { maxLength: 4, selector: ([n]) => n })
      .map((entries) => ({ type: 'directory' as const, entries: Object.fromEntries(entries) })),
  ),
})).node;

const narOf = (tree: NarTree) => Buffer.concat([...narFromTree(sortedTree(tree))]);

/** NAR entries must be sorted by bytes; the writer writes them in key order, so sort here. */
function sortedTree(tree: NarTree): NarTree {
  if (tree.type !== 'directory') return tree;
  const names = Object.keys(tree.entries).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const entries: Record<string, NarTree> = Object.create(null);
  for (const n of names) entries[n] = sortedTree(tree.entries[n]!);
  return { type: 'directory', entries };
}

function parseNar(bytes: Uint8Array, cuts: number[] = []) {
  const parser = new NarParser();
  let at = 0;
  for (const cut of [...cuts.map((c) => c % (bytes.length + 1))].sort((a, b) => a - b)) {
    parser.update(bytes.subarray(at, cut));
    at = cut;
  }
  parser.update(bytes.subarray(at));
  return parser.finish();
}

/** The listing a tree should have, without offsets (the parser computes those). */
function shape(node: NarTree | NarListingNode): unknown {
  if (node.type === 'regular')
    return { type: 'regular', size: 'contents' in node ? node.contents.length : node.size, x: !!node.executable };
  if (node.type === 'symlink') return { type: 'symlink', target: node.target };
  const entries = node.entries as Record<string, NarTree | NarListingNode>;
  return { type: 'directory', entries: Object.fromEntries(Object.keys(entries).map((k) => [k, shape(entries[k]!)])) };
}

describe('NAR parser and listing writer', () => {
  it('accepts every NAR the writer makes, in any chunking: hash, size and listing are right', () => {
    fc.assert(
      fc.property(narTree, fc.array(fc.nat(), { maxLength: 6 }), (tree, cuts) => {
        const nar = narOf(tree);
        const summary = parseNar(nar, cuts);
        assert.equal(summary.narSize, nar.length);
        assert.equal(summary.narHash, `sha256:${encodeNix32(createHash('sha256').update(nar).digest())}`);
        assert.deepEqual(shape(summary.listing!.root), shape(sortedTree(tree)));
        // The listing is JSON that reads back as the same tree, with every offset inside the NAR.
        const json = JSON.parse(formatListing(summary.listing!)) as { version: number; root: NarListingNode };
        assert.equal(json.version, 1);
        assert.deepEqual(shape(json.root), shape(summary.listing!.root));
        const offsets = (n: NarListingNode): number[] =>
          n.type === 'regular'
            ? [n.narOffset]
            : n.type === 'directory'
              ? Object.values(n.entries).flatMap(offsets)
              : [];
        for (const o of offsets(json.root)) assert.ok(o > 0 && o <= nar.length);
      }),
      fuzzRuns(300),
    );
  });

  it('refuses a damaged NAR with NAR_INVALID, or accepts it only with its true hash and size', () => {
    const damaged = fc
      .tuple(narTree, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }))
      .map(([tree, flips]) => {
        const nar = Buffer.from(narOf(tree));
        for (const [at, bits] of flips) nar[at % nar.length]! ^= bits;
        return nar;
      });
    const cut = fc.tuple(narTree, fc.nat(), fc.uint8Array({ maxLength: 16 })).map(([tree, at, extra]) => {
      const nar = narOf(tree);
      return at % 2 === 0
        ? nar.subarray(0, at % nar.length)
        : Buffer.concat([nar, extra.length ? extra : Buffer.of(0)]);
    });
    fc.assert(
      fc.property(fc.oneof(damaged, cut, fc.uint8Array({ maxLength: 200 })), (bytes) => {
        try {
          const summary = parseNar(bytes);
          assert.equal(summary.narSize, bytes.length);
          assert.equal(summary.narHash, `sha256:${encodeNix32(createHash('sha256').update(bytes).digest())}`);
        } catch (err) {
          assert.ok(isNarhubError(err) && err.code === 'NAR_INVALID', String(err));
        }
      }),
      fuzzRuns(500),
    );
  });
});

// .drv ---------------------------------------------------------------------------------------------

const drvString = fc.string({
  unit: fc.oneof(fc.constantFrom('"', '\\', '\n', '\r', '\t'), fc.string({ minLength: 1, maxLength: 1 })),
  maxLength: 20,
});
const derivation: fc.Arbitrary<Derivation> = fc.record({
  outputs: fc
    .uniqueArray(fc.tuple(fc.stringMatching(/^[a-z]{1,6}$/), basename), {
      minLength: 1,
      maxLength: 3,
      selector: ([n]) => n,
    })
    .map((outs) =>
      Object.fromEntries(outs.map(([name, b]) => [name, { path: `/nix/store/${b}`, hashAlgo: '', hash: '' }])),
    ),
  inputDrvs: fc
    .uniqueArray(
      fc.tuple(basename, fc.uniqueArray(fc.stringMatching(/^[a-z]{1,6}$/), { minLength: 1, maxLength: 2 })),
      {
        maxLength: 3,
        selector: ([b]) => b,
      },
    )
    .map((ins) => Object.fromEntries(ins.map(([b, outs]) => [`/nix/store/${b}.drv`, [...outs].sort()]))),
  inputSrcs: fc
    .uniqueArray(
      basename.map((b) => `/nix/store/${b}`),
      { maxLength: 3 },
    )
    .map((s) => s.sort()),
  platform: fc.constantFrom('x86_64-linux', 'aarch64-darwin'),
  builder: drvString,
  args: fc.array(drvString, { maxLength: 3 }),
  env: fc
    .uniqueArray(fc.tuple(fc.stringMatching(/^[A-Za-z_]{1,8}$/), drvString), { maxLength: 4, selector: ([k]) => k })
    .map((kv) => Object.fromEntries(kv)),
});

/** The ATerm Nix writes for a derivation (keys in sorted order, as Nix's maps are). */
function writeDerivation(d: Derivation): string {
  const q = (s: string) =>
    `"${s.replace(/[\\"\n\r\t]/g, (c) => ({ '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c]!)}"`;
  const list = (xs: string[]) => `[${xs.join(',')}]`;
  const sorted = <T>(o: Record<string, T>) =>
    Object.keys(o)
      .sort()
      .map((k) => [k, o[k]!] as const);
  const outputs = sorted(d.outputs).map(([n, o]) => `(${q(n)},${q(o.path)},${q(o.hashAlgo)},${q(o.hash)})`);
  const inputDrvs = sorted(d.inputDrvs).map(([p, outs]) => `(${q(p)},${list(outs.map(q))})`);
  const env = sorted(d.env).map(([k, v]) => `(${q(k)},${q(v)})`);
  const fields = [list(outputs), list(inputDrvs), list(d.inputSrcs.map(q)), q(d.platform), q(d.builder)];
  return `Derive(${[...fields, list(d.args.map(q)), list(env)].join(',')})`;
}

describe('.drv parser', () => {
  it('reads back every derivation as Nix writes it', () => {
    fc.assert(
      fc.property(derivation, (d) => {
        assert.deepEqual(plain(parseDerivation(writeDerivation(d))), plain(d));
      }),
      fuzzRuns(300),
    );
  });

  it('answers any mangled .drv with a derivation or its own error', () => {
    fc.assert(
      fc.property(fc.oneof(mutated(derivation.map(writeDerivation)), fc.string({ maxLength: 200 })), (text) => {
        onlyNarhubErrors(() => parseDerivation(text));
      }),
      fuzzRuns(500),
    );
  });
});

// netrc --------------------------------------------------------------------------------------------

const netrcWord = fc
  .stringMatching(/^[A-Za-z0-9._:@/-]{1,20}$/)
  .filter((w) => !['machine', 'default', 'login', 'password', 'account', 'macdef'].includes(w));
const space = fc.constantFrom(' ', '  ', '\t', '\n', ' \n ');

describe('netrc parser', () => {
  it('finds every machine, login and password, however the file is spaced and commented', () => {
    const entry = fc.record({ machine: netrcWord, login: netrcWord, password: netrcWord });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 5 }), fc.array(space, { minLength: 8, maxLength: 8 }), (entries, sp) => {
        const text = entries
          .map(
            (e, i) =>
              `machine${sp[i % 8]}${e.machine}${sp[(i + 1) % 8]}login ${e.login}${sp[(i + 2) % 8]}` +
              `password ${e.password}${i % 2 ? ' # a comment' : ''}`,
          )
          .join('\n');
        assert.deepEqual(plain(parseNetrc(text)), plain(entries));
      }),
      fuzzRuns(300),
    );
  });

  it('never throws on any text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        for (const e of parseNetrc(text)) assert.ok(e.machine === undefined || typeof e.machine === 'string');
      }),
      fuzzRuns(500),
    );
  });
});

// Config -------------------------------------------------------------------------------------------

describe('config parser', () => {
  it('answers any JSON value with a config or CONFIG_INVALID naming a key', () => {
    const keys = fc.constantFrom(
      'dataDir',
      'listen',
      'maxNarSize',
      'gcInterval',
      'gc',
      'caches',
      'storage',
      'hub',
      'zstd',
      'logLevel',
      'bogus',
    );
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom('64G', '30d', '1h30m', '-1', '127.0.0.1:8080', { type: 's3' }, [{ name: 'a' }]),
    );
    fc.assert(
      fc.property(fc.oneof(fc.dictionary(keys, value, { maxKeys: 4 }), fc.jsonValue({ maxDepth: 2 })), (raw) => {
        try {
          const config = parseConfig(raw);
          assert.ok(Number.isSafeInteger(config.maxNarSize) && config.maxNarSize >= 1);
          assert.ok(Number.isSafeInteger(config.gc.interval) && config.gc.interval >= 1);
          assert.ok(config.gc.interval * 1000 < 2 ** 31, 'a timer can hold the sweep interval');
        } catch (err) {
          assert.ok(isNarhubError(err) && err.code === 'CONFIG_INVALID', String(err));
          assert.match(err.message, /^[^\n]+$/, 'one line');
        }
      }),
      fuzzRuns(300),
    );
  });
});
