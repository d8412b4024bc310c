import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NarhubError } from '../../../src/errors.js';
import { NIX32_ALPHABET, decodeNix32, encodeNix32, nix32Length } from '../../../src/nix/nix32.js';

const sha256 = (s: string | Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(s).digest());
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

function isHashInvalid(err: unknown): boolean {
  return err instanceof NarhubError && err.code === 'HASH_INVALID';
}

describe('nix32', () => {
  it('uses the alphabet without e, o, u, t', () => {
    assert.equal(NIX32_ALPHABET.length, 32);
    assert.equal(NIX32_ALPHABET, '0123456789abcdfghijklmnpqrsvwxyz');
  });

  it('has the lengths Nix gives md5, sha1, sha256 and sha512', () => {
    assert.equal(nix32Length(0), 0);
    assert.equal(nix32Length(1), 2);
    assert.equal(nix32Length(16), 26);
    assert.equal(nix32Length(20), 32);
    assert.equal(nix32Length(32), 52);
    assert.equal(nix32Length(64), 103);
    for (let n = 1; n < 200; n++) assert.equal(nix32Length(n), Math.floor((8 * n - 1) / 5) + 1);
  });

  it('encodes sha256("abc") as Nix\'s own tests do', () => {
    assert.equal(encodeNix32(sha256('abc')), '1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s');
    assert.deepEqual(decodeNix32('1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', 32), sha256('abc'));
  });

  it('encodes sha1("") as Nix does', () => {
    const digest = new Uint8Array(createHash('sha1').update('').digest());
    assert.equal(encodeNix32(digest), '143xibwh31h9bvxzalr0sjvbbvpa6ffs');
    assert.deepEqual(decodeNix32('143xibwh31h9bvxzalr0sjvbbvpa6ffs', 20), digest);
  });

  it('encodes the folded hash and NAR hash of hello.txt', () => {
    assert.equal(encodeNix32(hex('7daba60473c6b92b848d53c87815d4b7fe5c6f8a')), 'i9pmrzmpshapij2kin22pff6fc2adavx');
    assert.equal(
      encodeNix32(hex('1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13')),
      '04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
    );
  });

  it('treats the bytes as a little-endian integer', () => {
    assert.equal(encodeNix32(new Uint8Array([1])), '01');
    assert.equal(encodeNix32(new Uint8Array([31])), '0z');
    assert.equal(encodeNix32(new Uint8Array([32])), '10');
    assert.equal(encodeNix32(new Uint8Array([0, 1])), '0080'); // 256 = 8·32
    assert.equal(encodeNix32(new Uint8Array(0)), '');
  });

  it('matches the "integer in base 32" definition for random inputs', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70 }), (bytes) => {
        let n = 0n;
        for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] ?? 0);
        let expected = '';
        for (let k = 0; k < nix32Length(bytes.length); k++) {
          expected = NIX32_ALPHABET[Number(n & 31n)] + expected;
          n >>= 5n;
        }
        assert.equal(encodeNix32(bytes), expected);
      }),
    );
  });

  it('round-trips any byte string', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        assert.deepEqual(decodeNix32(encodeNix32(bytes), bytes.length), bytes);
      }),
    );
  });

  it('round-trips any canonical string', () => {
    const digit = fc.constantFrom(...NIX32_ALPHABET);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.array(digit, { minLength: 110, maxLength: 110 }), (n, digits) => {
        const text = digits.slice(0, nix32Length(n)).join('');
        let decoded: Uint8Array;
        try {
          decoded = decodeNix32(text, n);
        } catch (err) {
          assert.ok(isHashInvalid(err));
          return; // surplus bits set: rejected, fine
        }
        assert.equal(encodeNix32(decoded), text);
      }),
    );
  });

  it('rejects characters outside the alphabet', () => {
    const good = '1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s';
    for (const bad of ['e', 'o', 'u', 't', 'B', '-', ' ', 'é', '\u0000']) {
      const text = good.slice(0, 10) + bad + good.slice(11);
      assert.throws(() => decodeNix32(text, 32), isHashInvalid, `char ${JSON.stringify(bad)}`);
    }
  });

  it('rejects the wrong length', () => {
    assert.throws(() => decodeNix32('1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5', 32), isHashInvalid);
    assert.throws(() => decodeNix32('1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s0', 32), isHashInvalid);
    assert.throws(() => decodeNix32('', 32), isHashInvalid);
  });

  it('rejects surplus high bits (sha256: first char must be 0 or 1)', () => {
    const rest = 'b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s';
    assert.doesNotThrow(() => decodeNix32(`0${rest}`, 32));
    assert.doesNotThrow(() => decodeNix32(`1${rest}`, 32));
    for (const first of '23456789abcdfghijklmnpqrsvwxyz') {
      assert.throws(() => decodeNix32(`${first}${rest}`, 32), isHashInvalid);
    }
    // 20 bytes = 160 bits = exactly 32 digits: no surplus, everything decodes.
    assert.doesNotThrow(() => decodeNix32('zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz', 20));
    // 1 byte in 2 digits: 10 bits, so the first digit may only be 0..7.
    assert.deepEqual(decodeNix32('7z', 1), new Uint8Array([255]));
    assert.throws(() => decodeNix32('80', 1), isHashInvalid);
  });
});
