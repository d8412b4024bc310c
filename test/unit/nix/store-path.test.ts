import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NarhubError } from '../../../src/errors.js';
import { encodeNix32 } from '../../../src/nix/nix32.js';
import {
  DEFAULT_STORE_DIR,
  formatStorePath,
  isDerivationPath,
  isValidHashPart,
  isValidStorePathName,
  parseStorePath,
  parseStorePathBasename,
} from '../../../src/nix/store-path.js';

const HASH = 'i9pmrzmpshapij2kin22pff6fc2adavx';

function storePathInvalid(fragment: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof NarhubError, `expected NarhubError, got ${String(err)}`);
    assert.equal(err.code, 'STORE_PATH_INVALID');
    assert.ok(err.message.includes(fragment), err.message);
    return true;
  };
}

const sha256Hex = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

/** sha256 of the fingerprint, XOR-folded to 20 bytes, in nix32. */
function makeHashPart(fingerprint: string): string {
  const h = createHash('sha256').update(fingerprint).digest();
  const out = new Uint8Array(20);
  for (let i = 0; i < h.length; i++) out[i % 20] = (out[i % 20] ?? 0) ^ (h[i] ?? 0);
  return encodeNix32(out);
}

function nar(contents: string): Buffer {
  const str = (s: Buffer): Buffer => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(s.length));
    return Buffer.concat([len, s, Buffer.alloc((8 - (s.length % 8)) % 8)]);
  };
  const tokens = ['nix-archive-1', '(', 'type', 'regular', 'contents'].map((t) => str(Buffer.from(t)));
  return Buffer.concat([...tokens, str(Buffer.from(contents)), str(Buffer.from(')'))]);
}

describe('store path hash parts (hello.txt, added with nix-store --add)', () => {
  it('derives /nix/store/i9pm…-hello.txt from the NAR of "hello\\n"', () => {
    const bytes = nar('hello\n');
    assert.equal(bytes.length, 120);
    const narHex = sha256Hex(bytes);
    assert.equal(narHex, '1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13');
    const fp = `source:sha256:${narHex}:/nix/store:hello.txt`;
    assert.equal(sha256Hex(fp), 'fe50c26088fb1e2ba70dc3de7815d4b7fe5c6f8a83fb6464fb3da70023809016');
    const path = parseStorePath(`/nix/store/${makeHashPart(fp)}-hello.txt`);
    assert.deepEqual(path, { hashPart: HASH, name: 'hello.txt', basename: `${HASH}-hello.txt` });
  });

  it('derives the flat fixed-output and text examples', () => {
    const inner = sha256Hex(`fixed:out:sha256:${sha256Hex('hello\n')}:`);
    assert.equal(makeHashPart(`output:out:sha256:${inner}:/nix/store:hello.txt`), 'gy454w1cxaq731grqwylhzf4pp9r5izh');
    assert.equal(
      makeHashPart(`text:sha256:${sha256Hex('dependency\n')}:/nix/store:dep.txt`),
      '7hdk8qb9nscfnjpv2h2fgsjia36908lr',
    );
  });
});

describe('parseStorePathBasename', () => {
  it('splits valid basenames', () => {
    assert.deepEqual(parseStorePathBasename(`${HASH}-hello.txt`), {
      hashPart: HASH,
      name: 'hello.txt',
      basename: `${HASH}-hello.txt`,
    });
    for (const name of ['a', 'A-Za-z0-9+-._?=', '-', '.a', '..a', '...', 'a.', '-.', '.drv', '-.-', 'x'.repeat(211)]) {
      assert.equal(parseStorePathBasename(`${HASH}-${name}`).name, name, name);
    }
  });

  it('rejects a bad hash part, saying so', () => {
    assert.throws(() => parseStorePathBasename(`${HASH.slice(0, 31)}e-x`), storePathInvalid('hash part'));
    assert.throws(() => parseStorePathBasename(`${HASH.toUpperCase()}-x`), storePathInvalid('hash part'));
    assert.throws(() => parseStorePathBasename(`${HASH.slice(1)}-xy`), storePathInvalid('hash part'));
    assert.throws(() => parseStorePathBasename('short'), storePathInvalid('too short'));
    assert.throws(() => parseStorePathBasename(`${HASH}-`), storePathInvalid('too short'));
    assert.throws(() => parseStorePathBasename(''), storePathInvalid('too short'));
  });

  it('requires "-" after the hash', () => {
    assert.throws(() => parseStorePathBasename(`${HASH}_hello`), storePathInvalid('expected "-"'));
    assert.throws(() => parseStorePathBasename(`${HASH}0-hello`), storePathInvalid('hash part'));
  });

  it('rejects bad names, saying why', () => {
    assert.throws(() => parseStorePathBasename(`${HASH}-a b`), storePathInvalid('illegal character " "'));
    assert.throws(() => parseStorePathBasename(`${HASH}-a/b`), storePathInvalid('illegal character "/"'));
    assert.throws(() => parseStorePathBasename(`${HASH}-é`), storePathInvalid('illegal character "é"'));
    assert.throws(() => parseStorePathBasename(`${HASH}-a\r`), storePathInvalid('illegal character "\\r"'));
    assert.throws(() => parseStorePathBasename(`${HASH}-${'x'.repeat(212)}`), storePathInvalid('longer than 211'));
    assert.throws(() => parseStorePathBasename(`${HASH}-.`), storePathInvalid('must not be "."'));
    assert.throws(() => parseStorePathBasename(`${HASH}-..`), storePathInvalid('must not be ".."'));
    assert.throws(() => parseStorePathBasename(`${HASH}-.-foo`), storePathInvalid('must not start'));
    assert.throws(() => parseStorePathBasename(`${HASH}-..-foo`), storePathInvalid('must not start'));
  });

  it('accepts exactly the names matching the spec grammar', () => {
    const chars = fc.constantFrom(...'abcXYZ019+-._?= /é:'.split(''));
    fc.assert(
      fc.property(fc.array(chars, { minLength: 0, maxLength: 12 }), (cs) => {
        const name = cs.join('');
        const expected =
          /^[A-Za-z0-9+\-._?=]{1,211}$/.test(name) &&
          name !== '.' &&
          name !== '..' &&
          !name.startsWith('.-') &&
          !name.startsWith('..-');
        assert.equal(isValidStorePathName(name), expected, name);
      }),
    );
  });
});

describe('parseStorePath', () => {
  it('parses full paths in the default and a custom store dir', () => {
    assert.equal(DEFAULT_STORE_DIR, '/nix/store');
    assert.equal(parseStorePath(`/nix/store/${HASH}-hello.txt`).basename, `${HASH}-hello.txt`);
    assert.equal(parseStorePath(`/tmp/s/${HASH}-hello.txt`, '/tmp/s').name, 'hello.txt');
    const p = parseStorePath(`/nix/store/${HASH}-hello.txt`);
    assert.equal(formatStorePath(p), `/nix/store/${HASH}-hello.txt`);
    assert.equal(formatStorePath(p, '/tmp/s'), `/tmp/s/${HASH}-hello.txt`);
  });

  it('rejects anything not directly inside the store dir', () => {
    for (const bad of [
      `/nix/store/${HASH}-hello.txt/bin`,
      `/nix/store/${HASH}-hello.txt/`,
      `/nix/store//${HASH}-hello.txt`,
      `/nix/store/../store/${HASH}-hello.txt`,
      `nix/store/${HASH}-hello.txt`,
      `${HASH}-hello.txt`,
      `/nix/storex/${HASH}-hello.txt`,
      `/nix/store`,
      `/nix/store/`,
      ` /nix/store/${HASH}-hello.txt`,
      `/nix/store/${HASH}-hello.txt\n`,
    ]) {
      assert.throws(() => parseStorePath(bad), storePathInvalid('invalid store path'), bad);
    }
    assert.throws(() => parseStorePath(`/nix/store/${HASH}-x`, '/other'), storePathInvalid('/other'));
  });
});

describe('helpers', () => {
  it('isValidHashPart', () => {
    assert.ok(isValidHashPart(HASH));
    assert.ok(!isValidHashPart(`${HASH}0`));
    assert.ok(!isValidHashPart(HASH.slice(1)));
    assert.ok(!isValidHashPart(`${HASH.slice(1)}e`));
    assert.ok(!isValidHashPart(`${HASH.slice(1)}\n`));
  });

  it('isDerivationPath', () => {
    assert.ok(isDerivationPath(parseStorePathBasename('ni43rvaqf7pvnypag20rpww5sa4i4nc0-withref.drv')));
    assert.ok(!isDerivationPath(parseStorePathBasename(`${HASH}-hello.txt`)));
    assert.ok(!isDerivationPath(parseStorePathBasename(`${HASH}-drv`)));
  });
});
