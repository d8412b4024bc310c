import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NarhubError } from '../../../src/errors.js';
import { narInfoFingerprint } from '../../../src/nix/fingerprint.js';
import { formatHash, parseHash } from '../../../src/nix/hash.js';

const WITHREF_PATH = '/nix/store/jhw685mlqjw2m5g0b5n7i789n70mjw4a-withref';
const WITHREF_HASH = 'sha256:0990xy6x3bx2hvwf0l93kwd1l2kvxz95nynqan53hbciz9qq71pg';
const DEP = '7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt';
const HELLO_PATH = '/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt';
const HELLO_HASH = 'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw';

function rejects(code: string, fragment: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof NarhubError, String(err));
    assert.equal(err.code, code);
    assert.ok(err.message.includes(fragment), err.message);
    return true;
  };
}

describe('narInfoFingerprint', () => {
  it('matches the fingerprints Nix 2.8 signed for two paths', () => {
    assert.equal(
      narInfoFingerprint(WITHREF_PATH, WITHREF_HASH, 168, [DEP]),
      '1;/nix/store/jhw685mlqjw2m5g0b5n7i789n70mjw4a-withref;' +
        'sha256:0990xy6x3bx2hvwf0l93kwd1l2kvxz95nynqan53hbciz9qq71pg;168;' +
        '/nix/store/7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt',
    );
    assert.equal(
      narInfoFingerprint(HELLO_PATH, HELLO_HASH, 120, []),
      '1;/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt;' +
        'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw;120;',
    );
  });

  it('renders the NarHash as sha256:<nix32> whatever encoding it was given in', () => {
    const expected = narInfoFingerprint(HELLO_PATH, HELLO_HASH, 120, []);
    const hash = parseHash(HELLO_HASH);
    for (const enc of ['base16', 'base64', 'sri'] as const) {
      assert.equal(narInfoFingerprint(HELLO_PATH, formatHash(hash, enc), 120, []), expected, enc);
    }
    assert.equal(
      narInfoFingerprint(HELLO_PATH, 'sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=', 120, []),
      expected,
    );
  });

  it('sorts references as full paths, comma-joined, and collapses duplicates', () => {
    const refs = [
      'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-a',
      DEP,
      'i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt',
      '00000000000000000000000000000000-z',
      DEP,
    ];
    assert.equal(
      narInfoFingerprint(HELLO_PATH, HELLO_HASH, 120, refs),
      `1;${HELLO_PATH};${HELLO_HASH};120;` +
        '/nix/store/00000000000000000000000000000000-z,/nix/store/7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt,' +
        '/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt,/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-a',
    );
  });

  it('does not depend on the order of references', () => {
    const refs = [
      'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-a',
      DEP,
      'i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt',
      '00000000000000000000000000000000-z',
    ];
    const expected = narInfoFingerprint(HELLO_PATH, HELLO_HASH, 120, refs);
    fc.assert(
      fc.property(fc.shuffledSubarray(refs, { minLength: refs.length }), (shuffled) => {
        assert.equal(narInfoFingerprint(HELLO_PATH, HELLO_HASH, 120, shuffled), expected);
      }),
    );
  });

  it('uses the given store dir for the path and references', () => {
    assert.equal(
      narInfoFingerprint('/tmp/s/jhw685mlqjw2m5g0b5n7i789n70mjw4a-withref', WITHREF_HASH, 168, [DEP], '/tmp/s'),
      `1;/tmp/s/jhw685mlqjw2m5g0b5n7i789n70mjw4a-withref;${WITHREF_HASH};168;/tmp/s/${DEP}`,
    );
  });

  it('refuses NarSize 0, non-sha256 hashes, and invalid paths', () => {
    assert.throws(
      () => narInfoFingerprint(HELLO_PATH, HELLO_HASH, 0, []),
      rejects('NARINFO_INVALID', 'NarSize must be > 0'),
    );
    assert.throws(() => narInfoFingerprint(HELLO_PATH, HELLO_HASH, -1, []), rejects('NARINFO_INVALID', 'NarSize'));
    assert.throws(() => narInfoFingerprint(HELLO_PATH, HELLO_HASH, 1.5, []), rejects('NARINFO_INVALID', 'NarSize'));
    assert.throws(
      () => narInfoFingerprint(HELLO_PATH, 'sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs', 120, []),
      rejects('HASH_INVALID', 'must be sha256, got sha1'),
    );
    assert.throws(
      () => narInfoFingerprint(HELLO_PATH, '04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw', 120, []),
      rejects('HASH_INVALID', 'prefix'),
    );
    assert.throws(
      () => narInfoFingerprint('/nix/store/x', HELLO_HASH, 120, []),
      rejects('STORE_PATH_INVALID', '/nix/store/x'),
    );
    assert.throws(
      () => narInfoFingerprint(HELLO_PATH, HELLO_HASH, 120, [`/nix/store/${DEP}`]),
      rejects('STORE_PATH_INVALID', 'hash part'),
    );
    assert.throws(
      () => narInfoFingerprint(HELLO_PATH, HELLO_HASH, 120, ['a,b']),
      rejects('STORE_PATH_INVALID', 'too short'),
    );
  });
});
