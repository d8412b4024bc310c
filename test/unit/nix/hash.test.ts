import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NarhubError } from '../../../src/errors.js';
import { formatHash, hashesEqual, parseHash, sha256Hash, sha256Of, type HashAlgo } from '../../../src/nix/hash.js';

const ABC = {
  hex: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  nix32: '1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s',
  base64: 'ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=',
};
const abcDigest = new Uint8Array(Buffer.from(ABC.hex, 'hex'));

function hashInvalid(fragment: string | RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof NarhubError, `expected NarhubError, got ${String(err)}`);
    assert.equal(err.code, 'HASH_INVALID');
    if (typeof fragment === 'string') assert.ok(err.message.includes(fragment), err.message);
    else assert.match(err.message, fragment);
    return true;
  };
}

describe('parseHash', () => {
  it('decodes sha256("abc") in base16, nix32 and base64', () => {
    for (const text of [
      `sha256:${ABC.nix32}`,
      `sha256:${ABC.hex}`,
      `sha256:${ABC.hex.toUpperCase()}`,
      `sha256:${ABC.base64}`,
      `sha256-${ABC.base64}`,
    ]) {
      const h = parseHash(text);
      assert.equal(h.algo, 'sha256', text);
      assert.deepEqual(h.digest, abcDigest, text);
    }
  });

  it('decodes the NAR hash of hello.txt in nix32 and SRI', () => {
    const a = parseHash('sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw');
    const b = parseHash('sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=');
    assert.equal(
      Buffer.from(a.digest).toString('hex'),
      '1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13',
    );
    assert.ok(hashesEqual(a, b));
  });

  it('knows md5, sha1, sha256 and sha512 sizes', () => {
    for (const [algo, size] of [
      ['md5', 16],
      ['sha1', 20],
      ['sha256', 32],
      ['sha512', 64],
    ] as const) {
      const digest = new Uint8Array(createHash(algo).update('x').digest());
      assert.equal(digest.length, size);
      for (const enc of ['nix32', 'base16', 'base64', 'sri'] as const) {
        const h = parseHash(formatHash({ algo, digest }, enc));
        assert.equal(h.algo, algo);
        assert.deepEqual(h.digest, digest);
      }
    }
  });

  it('round-trips every algorithm and encoding', () => {
    const algo = fc.constantFrom<HashAlgo>('md5', 'sha1', 'sha256', 'sha512');
    const sizes = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };
    fc.assert(
      fc.property(
        algo.chain((a) => fc.tuple(fc.constant(a), fc.uint8Array({ minLength: sizes[a], maxLength: sizes[a] }))),
        fc.constantFrom('nix32', 'base16', 'base64', 'sri') as fc.Arbitrary<'nix32' | 'base16' | 'base64' | 'sri'>,
        ([a, digest], enc) => {
          const text = formatHash({ algo: a, digest }, enc);
          const parsed = parseHash(text);
          assert.ok(hashesEqual(parsed, { algo: a, digest }));
          assert.equal(formatHash(parsed, enc), text);
        },
      ),
    );
  });

  it('rejects a hash without an algorithm prefix', () => {
    assert.throws(() => parseHash(ABC.nix32), hashInvalid('missing algorithm prefix'));
    assert.throws(() => parseHash(ABC.hex), hashInvalid('missing algorithm prefix'));
    assert.throws(() => parseHash(''), hashInvalid('missing algorithm prefix'));
  });

  it('rejects unknown algorithms', () => {
    assert.throws(() => parseHash(`SHA256:${ABC.nix32}`), hashInvalid('unknown hash algorithm "SHA256"'));
    assert.throws(() => parseHash(`blake3:${ABC.nix32}`), hashInvalid('unknown hash algorithm'));
    assert.throws(() => parseHash(`sha384-${ABC.base64}`), hashInvalid('unknown hash algorithm'));
    assert.throws(() => parseHash(`toString:${ABC.nix32}`), hashInvalid('unknown hash algorithm'));
  });

  it('rejects lengths that match no encoding', () => {
    assert.throws(() => parseHash(`sha256:${ABC.nix32}0`), hashInvalid(/wrong length 53 for sha256/));
    assert.throws(() => parseHash(`sha256:${ABC.hex.slice(1)}`), hashInvalid('wrong length'));
    assert.throws(() => parseHash('sha256:'), hashInvalid('wrong length 0'));
    assert.throws(() => parseHash(`sha1:${ABC.nix32}`), hashInvalid('wrong length'));
  });

  it('rejects bad characters in each encoding', () => {
    assert.throws(() => parseHash(`sha256:${ABC.hex.slice(0, -1)}g`), hashInvalid('base16'));
    assert.throws(() => parseHash(`sha256:${ABC.nix32.slice(0, -1)}e`), hashInvalid('invalid nix32 character'));
    assert.throws(() => parseHash(`sha256:${ABC.base64.slice(0, -2)}!=`), hashInvalid('base64'));
    assert.throws(() => parseHash(`sha256-${ABC.base64.slice(0, -2)} =`), hashInvalid('base64'));
  });

  it('rejects nix32 with surplus bits', () => {
    assert.throws(() => parseHash(`sha256:2${ABC.nix32.slice(1)}`), hashInvalid('surplus'));
  });

  it('rejects SRI of the wrong size or non-canonical base64', () => {
    const sha1 = createHash('sha1').update('').digest('base64');
    assert.throws(() => parseHash(`sha256-${sha1}`), hashInvalid('must be 32 bytes'));
    assert.throws(() => parseHash(`sha256-${ABC.base64.slice(0, -1)}`), hashInvalid('base64'));
    // Same bytes, but the unused low bits of the last character are set.
    assert.throws(() => parseHash(`sha256-${ABC.base64.slice(0, -2)}1=`), hashInvalid('base64'));
    assert.throws(() => parseHash(`sha256-${ABC.base64}\n`), hashInvalid('base64'));
  });

  it('uses the first ":" like Nix, so an SRI string with a colon is not SRI', () => {
    assert.throws(() => parseHash(`sha256-x:${ABC.nix32}`), hashInvalid('unknown hash algorithm "sha256-x"'));
  });
});

describe('formatHash', () => {
  it('formats every encoding with the algorithm prefix', () => {
    const h = sha256Hash(abcDigest);
    assert.equal(formatHash(h), `sha256:${ABC.nix32}`);
    assert.equal(formatHash(h, 'nix32'), `sha256:${ABC.nix32}`);
    assert.equal(formatHash(h, 'base16'), `sha256:${ABC.hex}`);
    assert.equal(formatHash(h, 'base64'), `sha256:${ABC.base64}`);
    assert.equal(formatHash(h, 'sri'), `sha256-${ABC.base64}`);
    assert.equal(formatHash({ algo: 'sha1', digest: new Uint8Array(20) }), `sha1:${'0'.repeat(32)}`);
  });
});

describe('sha256Hash / sha256Of / hashesEqual', () => {
  it('wraps a 32-byte digest and rejects other sizes', () => {
    assert.deepEqual(sha256Hash(abcDigest), { algo: 'sha256', digest: abcDigest });
    assert.throws(() => sha256Hash(new Uint8Array(31)), hashInvalid('32 bytes'));
    assert.throws(() => sha256Hash(new Uint8Array(64)), hashInvalid('32 bytes'));
  });

  it('hashes strings and bytes', () => {
    assert.ok(hashesEqual(sha256Of('abc'), sha256Hash(abcDigest)));
    assert.ok(hashesEqual(sha256Of(new TextEncoder().encode('abc')), sha256Hash(abcDigest)));
  });

  it('compares algorithm and digest', () => {
    const other = new Uint8Array(abcDigest);
    other[31] = (other[31] ?? 0) ^ 1;
    assert.ok(hashesEqual(parseHash(`sha256:${ABC.nix32}`), parseHash(`sha256-${ABC.base64}`)));
    assert.ok(!hashesEqual(sha256Hash(abcDigest), sha256Hash(other)));
    assert.ok(!hashesEqual({ algo: 'md5', digest: new Uint8Array(16) }, { algo: 'sha1', digest: new Uint8Array(16) }));
    assert.ok(!hashesEqual({ algo: 'md5', digest: new Uint8Array(16) }, { algo: 'md5', digest: new Uint8Array(15) }));
  });
});
