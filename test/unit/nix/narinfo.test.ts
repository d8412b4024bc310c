import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NarhubError } from '../../../src/errors.js';
import { formatHash, type HashAlgo } from '../../../src/nix/hash.js';
import { formatNarInfo, parseNarInfo, type NarInfo } from '../../../src/nix/narinfo.js';
import { NIX32_ALPHABET } from '../../../src/nix/nix32.js';
import { isValidStorePathName } from '../../../src/nix/store-path.js';

// Three narinfos written by Nix 2.8.0.
const WITHREF =
  'StorePath: /nix/store/jhw685mlqjw2m5g0b5n7i789n70mjw4a-withref\n' +
  'URL: nar/0l0rr4p69vpss7iafq6zrva1x7nk5lpqcncxd76d38zqzfpym094.nar.xz\n' +
  'Compression: xz\n' +
  'FileHash: sha256:0l0rr4p69vpss7iafq6zrva1x7nk5lpqcncxd76d38zqzfpym094\n' +
  'FileSize: 176\n' +
  'NarHash: sha256:0990xy6x3bx2hvwf0l93kwd1l2kvxz95nynqan53hbciz9qq71pg\n' +
  'NarSize: 168\n' +
  'References: 7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt\n' +
  'Deriver: ni43rvaqf7pvnypag20rpww5sa4i4nc0-withref.drv\n' +
  'Sig: example-key-1:mATOcbz8ytUJ11IQt70/5PmQQJ3b34uoSNWj7n7kF3m46faPgcl62ZDOlMQdjIN198iLQ1kIy6V+AwmvWEg9DQ==\n';

const DEP =
  'StorePath: /nix/store/7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt\n' +
  'URL: nar/1pnl92y7rrkm7kn2ra0d98fc4c2kz383gk396jwinbx04ldmkdzb.nar.xz\n' +
  'Compression: xz\n' +
  'FileHash: sha256:1pnl92y7rrkm7kn2ra0d98fc4c2kz383gk396jwinbx04ldmkdzb\n' +
  'FileSize: 136\n' +
  'NarHash: sha256:13w19wwvpfqyfq1fixzqjphj7dil4vlv9gada02f9kpl04qnmkw4\n' +
  'NarSize: 128\n' +
  'References: \n' +
  'Sig: example-key-1:tYSVjvL9yC96qCT5POr4KOQ9kelnCJgcARTF9Z6Qh8PsgZoqMc3ebSXeZ2K0O3MJG8uTMD/Q1Oahw9P1fJVNCw==\n' +
  'CA: text:sha256:1i0xww8znqa2wqbggkmgxy6was90nqc60b4wpv4hvwv1460id9dl\n';

const HELLO =
  'StorePath: /nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt\n' +
  'URL: nar/04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw.nar\n' +
  'Compression: none\n' +
  'FileHash: sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw\n' +
  'FileSize: 120\n' +
  'NarHash: sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw\n' +
  'NarSize: 120\n' +
  'References: \n' +
  'Sig: example-key-1:GEOKzKtcQQJDLaxdPZSYOX9BZhkCHZvHNMGx2KTS4/m5mZ8ROkYezx0mTXp01O+i7x0dWcBJBmLqSdnNjSGmCw==\n' +
  'CA: fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw\n';

const SIG = `k:${Buffer.alloc(64, 7).toString('base64')}`;

/** Asserts a NARINFO_PARSE_ERROR whose message is exactly `line N: Field: ...` and starts with `prefix`. */
function parseError(line: number, field: string, fragment?: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof NarhubError, `expected NarhubError, got ${String(err)}`);
    assert.equal(err.code, 'NARINFO_PARSE_ERROR');
    assert.ok(err.message.startsWith(`line ${line}: ${field}: `), err.message);
    if (fragment !== undefined) assert.ok(err.message.includes(fragment), err.message);
    assert.deepEqual(err.details, { line, field });
    return true;
  };
}

function formatError(field: string, fragment?: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof NarhubError, `expected NarhubError, got ${String(err)}`);
    assert.equal(err.code, 'NARINFO_INVALID');
    assert.ok(err.message.startsWith(`${field}: `), err.message);
    if (fragment !== undefined) assert.ok(err.message.includes(fragment), err.message);
    return true;
  };
}

/** HELLO with line `n` (1-based) replaced; `null` drops it. */
function helloWith(n: number, replacement: string | null): string {
  const lines = HELLO.slice(0, -1).split('\n');
  if (replacement === null) lines.splice(n - 1, 1);
  else lines[n - 1] = replacement;
  return `${lines.join('\n')}\n`;
}

describe('parseNarInfo: spec examples', () => {
  it('parses a narinfo with a reference and a deriver', () => {
    assert.deepEqual(parseNarInfo(WITHREF), {
      storePath: '/nix/store/jhw685mlqjw2m5g0b5n7i789n70mjw4a-withref',
      url: 'nar/0l0rr4p69vpss7iafq6zrva1x7nk5lpqcncxd76d38zqzfpym094.nar.xz',
      compression: 'xz',
      fileHash: 'sha256:0l0rr4p69vpss7iafq6zrva1x7nk5lpqcncxd76d38zqzfpym094',
      fileSize: 176,
      narHash: 'sha256:0990xy6x3bx2hvwf0l93kwd1l2kvxz95nynqan53hbciz9qq71pg',
      narSize: 168,
      references: ['7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt'],
      deriver: 'ni43rvaqf7pvnypag20rpww5sa4i4nc0-withref.drv',
      sigs: ['example-key-1:mATOcbz8ytUJ11IQt70/5PmQQJ3b34uoSNWj7n7kF3m46faPgcl62ZDOlMQdjIN198iLQ1kIy6V+AwmvWEg9DQ=='],
    });
  });

  it('parses a content-addressed narinfo with no references', () => {
    const info = parseNarInfo(DEP);
    assert.deepEqual(info.references, []);
    assert.equal(info.ca, 'text:sha256:1i0xww8znqa2wqbggkmgxy6was90nqc60b4wpv4hvwv1460id9dl');
    assert.equal(info.deriver, undefined);
    assert.ok(!('deriver' in info));
  });

  it('parses the Appendix A narinfo', () => {
    assert.deepEqual(parseNarInfo(HELLO), {
      storePath: '/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt',
      url: 'nar/04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw.nar',
      compression: 'none',
      fileHash: 'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
      fileSize: 120,
      narHash: 'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
      narSize: 120,
      references: [],
      sigs: ['example-key-1:GEOKzKtcQQJDLaxdPZSYOX9BZhkCHZvHNMGx2KTS4/m5mZ8ROkYezx0mTXp01O+i7x0dWcBJBmLqSdnNjSGmCw=='],
      ca: 'fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
    });
  });

  it('formats each spec example back byte for byte', () => {
    for (const text of [WITHREF, DEP, HELLO]) assert.equal(formatNarInfo(parseNarInfo(text)), text);
  });
});

describe('parseNarInfo: what Nix also accepts', () => {
  it('accepts fields in any order plus unknown fields, even repeated ones', () => {
    const lines = HELLO.slice(0, -1).split('\n').reverse();
    const text = `X-Unknown: 1\n${lines.join('\n')}\nX-Unknown: 2\nNarinfoVersion: whatever : here\n`;
    assert.deepEqual(parseNarInfo(text), parseNarInfo(HELLO));
  });

  it('parses any permutation of the lines to the same narinfo', () => {
    const lines = `${WITHREF}Sig: ${SIG}\nX-Unknown: y\n`.slice(0, -1).split('\n');
    const expected = parseNarInfo(`${lines.join('\n')}\n`);
    fc.assert(
      fc.property(fc.shuffledSubarray(lines, { minLength: lines.length }), (shuffled) => {
        const info = parseNarInfo(`${shuffled.join('\n')}\n`);
        assert.deepEqual({ ...info, sigs: [...info.sigs].sort() }, { ...expected, sigs: [...expected.sigs].sort() });
      }),
    );
  });

  it('treats a missing or empty Compression as bzip2', () => {
    assert.equal(parseNarInfo(helloWith(3, null)).compression, 'bzip2');
    assert.equal(parseNarInfo(helloWith(3, 'Compression: ')).compression, 'bzip2');
  });

  it('reads "Deriver: unknown-deriver" as no deriver', () => {
    const info = parseNarInfo(`${HELLO}Deriver: unknown-deriver\n`);
    assert.ok(!('deriver' in info));
  });

  it('accepts System, NarHash in base16 and SRI, and extra spaces between references', () => {
    const info = parseNarInfo(
      helloWith(6, 'NarHash: sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=')
        .replace(
          'References: \n',
          'References: 7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt  jhw685mlqjw2m5g0b5n7i789n70mjw4a-withref \n',
        )
        .concat(
          'System: x86_64-linux\n',
          'FileHash: sha256:1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13\n',
        )
        .replace(/^FileHash: sha256:04.*\n/m, ''),
    );
    assert.equal(info.narHash, 'sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=');
    assert.equal(info.fileHash, 'sha256:1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13');
    assert.deepEqual(info.references, [
      '7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt',
      'jhw685mlqjw2m5g0b5n7i789n70mjw4a-withref',
    ]);
    assert.equal(info.system, 'x86_64-linux');
  });

  it('keeps several signatures in file order', () => {
    const other = `a-key:${Buffer.alloc(64, 1).toString('base64')}`;
    const info = parseNarInfo(`${HELLO}Sig: ${other}\n`);
    assert.equal(info.sigs.length, 2);
    assert.equal(info.sigs[1], other);
    // …and formats them sorted.
    assert.ok(formatNarInfo(info).includes(`Sig: ${other}\nSig: example-key-1:`));
  });

  it('parses in a custom store dir', () => {
    const text = HELLO.replace('StorePath: /nix/store/', 'StorePath: /tmp/store/');
    assert.equal(parseNarInfo(text, '/tmp/store').storePath, '/tmp/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt');
    assert.throws(
      () => parseNarInfo(text),
      parseError(1, 'StorePath', 'not directly inside the store directory /nix/store'),
    );
    assert.equal(formatNarInfo(parseNarInfo(text, '/tmp/store'), '/tmp/store'), text);
  });
});

describe('parseNarInfo: errors name the line and field', () => {
  it('rejects CRLF line endings', () => {
    assert.throws(() => parseNarInfo(HELLO.replace(/\n/g, '\r\n')), parseError(1, 'StorePath', 'carriage return'));
    assert.throws(() => parseNarInfo(helloWith(5, 'FileSize: 120\r')), parseError(5, 'FileSize', 'CRLF'));
  });

  it('rejects "Key:value" without the space', () => {
    assert.throws(
      () => parseNarInfo(helloWith(1, 'StorePath:/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt')),
      parseError(1, 'StorePath', 'expected ": "'),
    );
    assert.throws(() => parseNarInfo(helloWith(7, 'NarSize:120')), parseError(7, 'NarSize', 'exactly one space'));
    assert.throws(
      () => parseNarInfo(helloWith(3, 'Compression:\tnone')),
      parseError(3, 'Compression', 'expected ": "'),
    );
    // Unknown keys too: Nix would misread them just the same.
    assert.throws(() => parseNarInfo(`${HELLO}Foo:\n`), parseError(11, 'Foo', 'expected ": "'));
  });

  it('rejects "References:" with no trailing space (Nix would read the next line as its value)', () => {
    assert.throws(() => parseNarInfo(helloWith(8, 'References:')), parseError(8, 'References', 'expected ": "'));
  });

  it('rejects extra whitespace around values other than References', () => {
    assert.throws(
      () => parseNarInfo(helloWith(7, 'NarSize:  120')),
      parseError(7, 'NarSize', 'leading or trailing whitespace'),
    );
    assert.throws(() => parseNarInfo(helloWith(3, 'Compression: none ')), parseError(3, 'Compression', 'whitespace'));
    assert.throws(() => parseNarInfo(helloWith(2, 'URL: nar/x.nar\t')), parseError(2, 'URL', 'whitespace'));
  });

  it('rejects a missing final newline', () => {
    assert.throws(() => parseNarInfo(HELLO.slice(0, -1)), parseError(10, 'CA', 'missing final newline'));
    assert.throws(() => parseNarInfo(`${HELLO}X-Unknown: 1`), parseError(11, 'X-Unknown', 'final newline'));
  });

  it('rejects blank lines, lines without a colon and empty keys', () => {
    assert.throws(() => parseNarInfo(`${HELLO}\n`), parseError(11, '(blank line)'));
    assert.throws(() => parseNarInfo(helloWith(4, '')), parseError(4, '(blank line)'));
    assert.throws(() => parseNarInfo(`${HELLO}# comment\n`), parseError(11, '"# comment"', 'no ":"'));
    assert.throws(() => parseNarInfo(`${HELLO}: value\n`), parseError(11, '": value"', 'key before ":" is empty'));
  });

  it('rejects missing required fields at the end of input', () => {
    assert.throws(() => parseNarInfo(''), parseError(1, 'StorePath', 'required field is missing'));
    assert.throws(() => parseNarInfo(helloWith(1, null)), parseError(10, 'StorePath', 'missing'));
    assert.throws(() => parseNarInfo(helloWith(2, null)), parseError(10, 'URL', 'missing'));
    assert.throws(() => parseNarInfo(helloWith(6, null)), parseError(10, 'NarHash', 'missing'));
    assert.throws(() => parseNarInfo(helloWith(7, null)), parseError(10, 'NarSize', 'missing'));
  });

  it('rejects NarSize 0 and non-decimal sizes', () => {
    assert.throws(() => parseNarInfo(helloWith(7, 'NarSize: 0')), parseError(7, 'NarSize', 'greater than 0'));
    for (const bad of ['-1', '+1', '0120', '1e3', '0x78', '12.0', '', '١٢٠', '99999999999999999999']) {
      assert.throws(() => parseNarInfo(helloWith(7, `NarSize: ${bad}`)), parseError(7, 'NarSize'), bad);
      assert.throws(() => parseNarInfo(helloWith(5, `FileSize: ${bad}`)), parseError(5, 'FileSize'), bad);
    }
    assert.equal(parseNarInfo(helloWith(5, 'FileSize: 0')).fileSize, 0);
    assert.equal(parseNarInfo(helloWith(7, `NarSize: ${Number.MAX_SAFE_INTEGER}`)).narSize, Number.MAX_SAFE_INTEGER);
  });

  it('rejects bad hashes in NarHash and FileHash', () => {
    const nix32 = '04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw';
    assert.throws(
      () => parseNarInfo(helloWith(6, `NarHash: ${nix32}`)),
      parseError(6, 'NarHash', 'missing algorithm prefix'),
    );
    assert.throws(
      () => parseNarInfo(helloWith(6, `NarHash: sha256:${nix32.slice(1)}`)),
      parseError(6, 'NarHash', 'wrong length'),
    );
    assert.throws(
      () => parseNarInfo(helloWith(6, `NarHash: sha256:2${nix32.slice(1)}`)),
      parseError(6, 'NarHash', 'surplus'),
    );
    assert.throws(
      () => parseNarInfo(helloWith(4, `FileHash: sha257:${nix32}`)),
      parseError(4, 'FileHash', 'unknown hash algorithm'),
    );
    assert.throws(() => parseNarInfo(helloWith(4, 'FileHash: ')), parseError(4, 'FileHash'));
  });

  it('rejects duplicate fields, naming the first occurrence', () => {
    assert.throws(
      () => parseNarInfo(helloWith(8, 'References: \nReferences: 7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt')),
      parseError(9, 'References', 'duplicate field (first given on line 8)'),
    );
    assert.throws(
      () => parseNarInfo(`${HELLO}StorePath: /nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt\n`),
      parseError(11, 'StorePath', 'duplicate'),
    );
    // Fields already in HELLO clash at once (line 11); new ones on their second line (12).
    for (const [field, line] of [
      ['URL: x', 11],
      ['Compression: xz', 11],
      ['NarSize: 1', 11],
      ['CA: fixed:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs', 11],
      ['System: a', 12],
      ['Deriver: unknown-deriver', 12],
    ] as const) {
      const text = `${HELLO}${field}\n${field}\n`;
      assert.throws(() => parseNarInfo(text), parseError(line, field.split(':')[0] ?? '', 'duplicate'), field);
    }
  });

  it('rejects invalid or repeated references', () => {
    const dep = '7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt';
    assert.throws(
      () => parseNarInfo(helloWith(8, `References: ${dep} ${dep}`)),
      parseError(8, 'References', 'listed twice'),
    );
    assert.throws(
      () => parseNarInfo(helloWith(8, `References: /nix/store/${dep}`)),
      parseError(8, 'References', 'hash part'),
    );
    assert.throws(() => parseNarInfo(helloWith(8, 'References: Sig:')), parseError(8, 'References', 'too short'));
    assert.throws(
      () => parseNarInfo(helloWith(8, `References: ${dep},${dep}`)),
      parseError(8, 'References', 'illegal character ","'),
    );
  });

  it('rejects an invalid StorePath', () => {
    for (const bad of [
      'nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt',
      '/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx',
      '/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-a/b',
      '',
    ]) {
      assert.throws(
        () => parseNarInfo(helloWith(1, `StorePath: ${bad}`)),
        parseError(1, 'StorePath', 'invalid store path'),
        bad,
      );
    }
  });

  it('rejects an empty URL, Compression with spaces, an empty System', () => {
    assert.throws(() => parseNarInfo(helloWith(2, 'URL: ')), parseError(2, 'URL', 'URL is empty'));
    assert.throws(() => parseNarInfo(helloWith(2, 'URL: nar/a b.nar')), parseError(2, 'URL', 'whitespace'));
    assert.throws(() => parseNarInfo(helloWith(3, 'Compression: x z')), parseError(3, 'Compression', 'whitespace'));
    assert.throws(() => parseNarInfo(`${HELLO}System: \n`), parseError(11, 'System', 'empty'));
  });

  it('rejects a Deriver that is not a .drv basename', () => {
    assert.throws(
      () => parseNarInfo(`${HELLO}Deriver: ni43rvaqf7pvnypag20rpww5sa4i4nc0-withref\n`),
      parseError(11, 'Deriver', 'not a .drv'),
    );
    assert.throws(
      () => parseNarInfo(`${HELLO}Deriver: /nix/store/ni43rvaqf7pvnypag20rpww5sa4i4nc0-withref.drv\n`),
      parseError(11, 'Deriver'),
    );
    assert.throws(() => parseNarInfo(`${HELLO}Deriver: \n`), parseError(11, 'Deriver'));
  });

  it('rejects malformed or repeated signatures (Nix 2.34+ treats them as corrupt)', () => {
    const b64 = Buffer.alloc(64).toString('base64');
    for (const bad of [
      'nokey',
      `:${b64}`,
      'k:',
      `k:${Buffer.alloc(63).toString('base64')}`,
      `k:${b64.slice(0, -2)}`,
      `k k:${b64}`,
      `k:${b64}x`,
    ]) {
      assert.throws(() => parseNarInfo(`${HELLO}Sig: ${bad}\n`), parseError(11, 'Sig'), bad);
    }
    assert.throws(() => parseNarInfo(`${HELLO}Sig: ${SIG}\nSig: ${SIG}\n`), parseError(12, 'Sig', 'first on line 11'));
  });

  it('rejects an invalid CA', () => {
    for (const bad of [
      '',
      'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
      'text:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs',
      'fixed:r:sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=',
      'fixed:r:sha256:xyz',
      'source:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
    ]) {
      assert.throws(() => parseNarInfo(helloWith(10, `CA: ${bad}`)), parseError(10, 'CA'), bad);
    }
    for (const good of [
      'fixed:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs',
      'fixed:r:sha256:1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13',
      'fixed:git:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs',
    ]) {
      assert.equal(parseNarInfo(helloWith(10, `CA: ${good}`)).ca, good);
    }
  });

  it('reports the first error in the file', () => {
    const text = helloWith(3, 'Compression:none').replace('NarSize: 120', 'NarSize: 0').replace(/\n$/, '\r\n');
    assert.throws(() => parseNarInfo(text), parseError(3, 'Compression'));
  });

  it('throws only NARINFO_PARSE_ERROR on arbitrary input', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.constantFrom(...HELLO.slice(0, -1).split('\n')),
      fc.constantFrom('References:', 'NarSize: 0', 'StorePath:/x', 'Sig: k:', '\r', 'CA: x'),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 14 }), fc.boolean(), (lines, lf) => {
        const text = lines.join('\n') + (lf ? '\n' : '');
        try {
          const info = parseNarInfo(text);
          // Whatever parses must format and parse back to the same thing.
          assert.deepEqual(parseNarInfo(formatNarInfo(info)), { ...info, sigs: [...info.sigs].sort() });
        } catch (err) {
          assert.ok(err instanceof NarhubError && err.code === 'NARINFO_PARSE_ERROR', String(err));
          const { line, field } = err.details as { line: number; field: string };
          assert.ok(Number.isInteger(line) && line >= 1 && line <= lines.length + 1, err.message);
          assert.ok(err.message.startsWith(`line ${line}: ${field}: `), err.message);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

// Generators of valid narinfos for the round-trip properties.
const nix32Chars = (n: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...NIX32_ALPHABET), { minLength: n, maxLength: n }).map((cs) => cs.join(''));
const nameArb = fc
  .array(fc.constantFrom(...'abcXYZ0189+-._?='.split('')), { minLength: 1, maxLength: 24 })
  .map((cs) => cs.join(''))
  .filter(isValidStorePathName);
const basenameArb = fc.tuple(nix32Chars(32), nameArb).map(([h, n]) => `${h}-${n}`);
const drvArb = fc
  .tuple(nix32Chars(32), nameArb)
  .map(([h, n]) => `${h}-${n}.drv`)
  .filter((b) => isValidStorePathName(b.slice(33)));
const DIGEST_SIZES: Record<HashAlgo, number> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };
const hashArb = (algos: HashAlgo[]): fc.Arbitrary<string> =>
  fc
    .constantFrom(...algos)
    .chain((algo) =>
      fc.tuple(
        fc.constant(algo),
        fc.uint8Array({ minLength: DIGEST_SIZES[algo], maxLength: DIGEST_SIZES[algo] }),
        fc.constantFrom('nix32', 'base16', 'base64', 'sri') as fc.Arbitrary<'nix32' | 'base16' | 'base64' | 'sri'>,
      ),
    )
    .map(([algo, digest, enc]) => formatHash({ algo, digest }, enc));
const sigArb = fc
  .tuple(
    fc.constantFrom('cache.nixos.org-1', 'example-key-1', 'a', 'narhub.example-2'),
    fc.uint8Array({ minLength: 64, maxLength: 64 }),
  )
  .map(([name, bytes]) => `${name}:${Buffer.from(bytes).toString('base64')}`);
const caArb = fc.oneof(
  hashArb(['sha256'])
    .filter((h) => !h.startsWith('sha256-'))
    .map((h) => `text:${h}`),
  fc
    .tuple(
      fc.constantFrom('', 'r:', 'git:'),
      hashArb(['md5', 'sha1', 'sha256', 'sha512']).filter((h) => h.includes(':')),
    )
    .map(([m, h]) => `fixed:${m}${h}`),
);
const urlArb = fc.oneof(
  fc.tuple(nix32Chars(52), fc.constantFrom('', '.xz', '.zst', '.bz2')).map(([h, ext]) => `nar/${h}.nar${ext}`),
  fc.webUrl(),
);
const narInfoArb: fc.Arbitrary<NarInfo> = fc.record(
  {
    storePath: basenameArb.map((b) => `/nix/store/${b}`),
    url: urlArb,
    compression: fc.constantFrom('none', 'xz', 'bzip2', 'zstd', 'br', 'gzip'),
    fileHash: hashArb(['sha256']),
    fileSize: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
    narHash: hashArb(['sha256', 'sha512', 'sha1', 'md5']),
    narSize: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    references: fc.uniqueArray(basenameArb, { maxLength: 6 }),
    deriver: drvArb,
    system: fc.constantFrom('x86_64-linux', 'aarch64-darwin', 'i686-linux'),
    sigs: fc
      .uniqueArray(sigArb, { maxLength: 4 })
      .map((s) => s.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))),
    ca: caArb,
  },
  {
    requiredKeys: ['storePath', 'url', 'compression', 'narHash', 'narSize', 'references', 'sigs'],
    noNullPrototype: true,
  },
);

describe('formatNarInfo', () => {
  it('round-trips every valid narinfo (parse ∘ format = id)', () => {
    fc.assert(
      fc.property(narInfoArb, (info) => {
        assert.deepEqual(parseNarInfo(formatNarInfo(info)), info);
      }),
      { numRuns: 500 },
    );
  });

  it('is a fixed point on its own output (format ∘ parse = id)', () => {
    fc.assert(
      fc.property(narInfoArb, (info) => {
        const text = formatNarInfo(info);
        assert.equal(formatNarInfo(parseNarInfo(text)), text);
      }),
      { numRuns: 300 },
    );
  });

  it("writes Nix's field order, the trailing space of an empty References, and sorted unique Sigs", () => {
    const info: NarInfo = {
      storePath: '/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt',
      url: 'nar/x.nar',
      compression: 'none',
      narHash: 'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
      narSize: 120,
      references: [],
      sigs: [SIG, `b:${Buffer.alloc(64).toString('base64')}`, SIG],
      ca: 'fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
      system: 'x86_64-linux',
      deriver: 'ni43rvaqf7pvnypag20rpww5sa4i4nc0-withref.drv',
      fileSize: 7,
      fileHash: 'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
    };
    assert.equal(
      formatNarInfo(info),
      'StorePath: /nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt\n' +
        'URL: nar/x.nar\n' +
        'Compression: none\n' +
        'FileHash: sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw\n' +
        'FileSize: 7\n' +
        'NarHash: sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw\n' +
        'NarSize: 120\n' +
        'References: \n' +
        'Deriver: ni43rvaqf7pvnypag20rpww5sa4i4nc0-withref.drv\n' +
        'System: x86_64-linux\n' +
        `Sig: b:${Buffer.alloc(64).toString('base64')}\n` +
        `Sig: ${SIG}\n` +
        'CA: fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw\n',
    );
  });

  it('omits optional fields that are undefined', () => {
    const info: NarInfo = {
      storePath: '/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt',
      url: 'nar/x.nar',
      compression: 'zstd',
      fileHash: undefined,
      fileSize: undefined,
      narHash: 'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
      narSize: 120,
      references: ['7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt', 'i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt'],
      deriver: undefined,
      sigs: [],
    };
    assert.equal(
      formatNarInfo(info),
      'StorePath: /nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt\nURL: nar/x.nar\nCompression: zstd\n' +
        'NarHash: sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw\nNarSize: 120\n' +
        'References: 7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt\n',
    );
  });

  it('refuses values that would make a corrupt or misread file', () => {
    const good = parseNarInfo(HELLO);
    const cases: [Partial<NarInfo>, string][] = [
      [{ storePath: '/nix/store/x' }, 'StorePath'],
      [{ storePath: '/other/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt' }, 'StorePath'],
      [{ url: '' }, 'URL'],
      [{ url: 'nar/x.nar\nStorePath: /evil' }, 'URL'],
      [{ compression: '' }, 'Compression'],
      [{ fileHash: 'abc' }, 'FileHash'],
      [{ fileSize: -1 }, 'FileSize'],
      [{ fileSize: 1.5 }, 'FileSize'],
      [{ narHash: 'sha256:zz' }, 'NarHash'],
      [{ narSize: 0 }, 'NarSize'],
      [{ narSize: Number.NaN }, 'NarSize'],
      [{ references: ['/nix/store/7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt'] }, 'References'],
      [
        { references: ['7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt', '7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt'] },
        'References',
      ],
      [{ deriver: '7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt' }, 'Deriver'],
      [{ system: 'x86_64 linux' }, 'System'],
      [{ sigs: ['k:abc'] }, 'Sig'],
      [{ ca: 'nope' }, 'CA'],
    ];
    for (const [patch, field] of cases) {
      assert.throws(() => formatNarInfo({ ...good, ...patch }), formatError(field), JSON.stringify(patch));
    }
  });
});
