import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import nacl from 'tweetnacl';
import { NarhubError } from '../../../src/errors.js';
import { narInfoFingerprint } from '../../../src/nix/fingerprint.js';
import { parseNarInfo, type NarInfo } from '../../../src/nix/narinfo.js';
import {
  formatPublicKey,
  formatSecretKey,
  generateKeyPair,
  parsePublicKey,
  parseSecretKey,
  publicKeyOf,
  signDetached,
  signNarInfo,
  verifyDetached,
  verifyNarInfoSig,
} from '../../../src/nix/signing.js';

// Appendix A: seed = bytes 0x00..0x1f.
const SECRET = 'example-key-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA==';
const PUBLIC = 'example-key-1:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=';

const WITHREF: NarInfo = parseNarInfo(
  'StorePath: /nix/store/jhw685mlqjw2m5g0b5n7i789n70mjw4a-withref\n' +
    'URL: nar/0l0rr4p69vpss7iafq6zrva1x7nk5lpqcncxd76d38zqzfpym094.nar.xz\n' +
    'Compression: xz\n' +
    'NarHash: sha256:0990xy6x3bx2hvwf0l93kwd1l2kvxz95nynqan53hbciz9qq71pg\n' +
    'NarSize: 168\n' +
    'References: 7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt\n' +
    'Deriver: ni43rvaqf7pvnypag20rpww5sa4i4nc0-withref.drv\n',
);
const WITHREF_SIG =
  'example-key-1:mATOcbz8ytUJ11IQt70/5PmQQJ3b34uoSNWj7n7kF3m46faPgcl62ZDOlMQdjIN198iLQ1kIy6V+AwmvWEg9DQ==';

const DEP: NarInfo = {
  storePath: '/nix/store/7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt',
  url: 'nar/1pnl92y7rrkm7kn2ra0d98fc4c2kz383gk396jwinbx04ldmkdzb.nar.xz',
  compression: 'xz',
  narHash: 'sha256:13w19wwvpfqyfq1fixzqjphj7dil4vlv9gada02f9kpl04qnmkw4',
  narSize: 128,
  references: [],
  sigs: [],
  ca: 'text:sha256:1i0xww8znqa2wqbggkmgxy6was90nqc60b4wpv4hvwv1460id9dl',
};
const DEP_SIG =
  'example-key-1:tYSVjvL9yC96qCT5POr4KOQ9kelnCJgcARTF9Z6Qh8PsgZoqMc3ebSXeZ2K0O3MJG8uTMD/Q1Oahw9P1fJVNCw==';

const HELLO: NarInfo = {
  storePath: '/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt',
  url: 'nar/04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw.nar',
  compression: 'none',
  narHash: 'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw',
  narSize: 120,
  references: [],
  sigs: [],
};
const HELLO_SIG =
  'example-key-1:GEOKzKtcQQJDLaxdPZSYOX9BZhkCHZvHNMGx2KTS4/m5mZ8ROkYezx0mTXp01O+i7x0dWcBJBmLqSdnNjSGmCw==';

function keyInvalid(fragment: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof NarhubError, String(err));
    assert.equal(err.code, 'KEY_INVALID');
    assert.ok(err.message.includes(fragment), err.message);
    return true;
  };
}

describe('key files', () => {
  it('loads the Appendix A key pair and derives its public key', () => {
    const sk = parseSecretKey(SECRET);
    assert.equal(sk.name, 'example-key-1');
    assert.deepEqual(
      sk.secretKey.subarray(0, 32),
      Uint8Array.from({ length: 32 }, (_, i) => i),
    );
    const pk = parsePublicKey(PUBLIC);
    assert.deepEqual(publicKeyOf(sk), pk);
    assert.equal(formatSecretKey(sk), SECRET);
    assert.equal(formatPublicKey(pk), PUBLIC);
    assert.equal(formatPublicKey(publicKeyOf(sk)), PUBLIC);
  });

  it('tolerates exactly one trailing newline', () => {
    assert.deepEqual(parseSecretKey(`${SECRET}\n`), parseSecretKey(SECRET));
    assert.deepEqual(parsePublicKey(`${PUBLIC}\n`), parsePublicKey(PUBLIC));
    assert.throws(() => parsePublicKey(`${PUBLIC}\n\n`), keyInvalid('base64'));
    assert.throws(() => parsePublicKey(`${PUBLIC}\r\n`), keyInvalid('base64'));
    assert.throws(() => parseSecretKey(`${SECRET} `), keyInvalid('base64'));
  });

  it('rejects an empty or odd name, bad base64 and wrong lengths', () => {
    assert.throws(() => parsePublicKey(PUBLIC.replace('example-key-1', '')), keyInvalid('key name is empty'));
    assert.throws(
      () => parsePublicKey('A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg='),
      keyInvalid('not "<name>:<base64>"'),
    );
    assert.throws(() => parsePublicKey(`my key${PUBLIC.slice(13)}`), keyInvalid('whitespace'));
    assert.throws(() => parsePublicKey(`${PUBLIC.slice(0, -1)}`), keyInvalid('not valid base64'));
    assert.throws(() => parsePublicKey(`${PUBLIC.slice(0, -2)}!=`), keyInvalid('not valid base64'));
    assert.throws(() => parsePublicKey('k:'), keyInvalid('0 bytes, expected 32'));
    assert.throws(() => parsePublicKey(SECRET), keyInvalid('64 bytes, expected 32'));
    assert.throws(() => parseSecretKey(PUBLIC), keyInvalid('32 bytes, expected 64'));
    assert.throws(() => parseSecretKey(''), keyInvalid('secret key'));
  });

  it('splits the name at the first colon', () => {
    // "a:b:<base64>" has name "a" and value "b:<base64>", which is not base64.
    assert.throws(() => parsePublicKey(`a:${PUBLIC}`), keyInvalid('not valid base64'));
  });

  it('rejects a secret key whose public half does not match its seed', () => {
    const bytes = Buffer.from(SECRET.slice(14), 'base64');
    bytes[40] = (bytes[40] ?? 0) ^ 1;
    assert.throws(
      () => parseSecretKey(`example-key-1:${bytes.toString('base64')}`),
      keyInvalid('does not match the seed'),
    );
  });

  it('generates usable key pairs that survive formatting', () => {
    const { secret, public: pub } = generateKeyPair('narhub.example-1');
    assert.equal(secret.secretKey.length, 64);
    assert.equal(pub.publicKey.length, 32);
    assert.deepEqual(publicKeyOf(secret), pub);
    const sk = parseSecretKey(formatSecretKey(secret));
    const pk = parsePublicKey(formatPublicKey(pub));
    assert.ok(verifyDetached([pk], 'hello', signDetached(sk, 'hello')));
    assert.notDeepEqual(generateKeyPair('narhub.example-1').secret, secret);
    assert.equal(formatSecretKey(secret).length, 'narhub.example-1'.length + 1 + 88);
    assert.throws(() => generateKeyPair(''), keyInvalid('empty'));
    assert.throws(() => generateKeyPair('a:b'), keyInvalid('":"'));
    assert.throws(() => generateKeyPair('a\nb'), keyInvalid('whitespace'));
  });
});

describe('signatures', () => {
  const sk = parseSecretKey(SECRET);
  const pk = parsePublicKey(PUBLIC);

  it('reproduces the exact Sig strings Nix 2.8 wrote', () => {
    assert.equal(signNarInfo(sk, WITHREF), WITHREF_SIG);
    assert.equal(signNarInfo(sk, DEP), DEP_SIG);
    assert.equal(signNarInfo(sk, HELLO), HELLO_SIG);
    assert.equal(
      signDetached(
        sk,
        '1;/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt;' +
          'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw;120;',
      ),
      HELLO_SIG,
    );
  });

  it('verifies the spec signatures', () => {
    assert.ok(verifyNarInfoSig([pk], WITHREF, WITHREF_SIG));
    assert.ok(verifyNarInfoSig([pk], DEP, DEP_SIG));
    assert.ok(verifyNarInfoSig([pk], HELLO, HELLO_SIG));
    // Signatures cover the fingerprint only; a NarHash in another encoding still verifies.
    assert.ok(
      verifyNarInfoSig([pk], { ...HELLO, narHash: 'sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=' }, HELLO_SIG),
    );
    assert.ok(
      verifyNarInfoSig(
        [pk],
        {
          ...HELLO,
          url: 'nar/other.nar.zst',
          compression: 'zstd',
          deriver: 'ni43rvaqf7pvnypag20rpww5sa4i4nc0-withref.drv',
        },
        HELLO_SIG,
      ),
    );
  });

  it('rejects signatures over different content', () => {
    assert.ok(!verifyNarInfoSig([pk], { ...HELLO, narSize: 121 }, HELLO_SIG));
    assert.ok(
      !verifyNarInfoSig([pk], { ...HELLO, references: ['7hdk8qb9nscfnjpv2h2fgsjia36908lr-dep.txt'] }, HELLO_SIG),
    );
    assert.ok(!verifyNarInfoSig([pk], WITHREF, HELLO_SIG));
    assert.ok(!verifyNarInfoSig([pk], { ...HELLO, narSize: 0 }, HELLO_SIG));
    assert.ok(!verifyNarInfoSig([pk], { ...HELLO, narHash: 'sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs' }, HELLO_SIG));
  });

  it('treats unknown key names and malformed signatures as not verified', () => {
    const other = generateKeyPair('other-1');
    const msg = narInfoFingerprint(HELLO.storePath, HELLO.narHash, HELLO.narSize, HELLO.references);
    const b64 = HELLO_SIG.slice('example-key-1:'.length);
    assert.ok(!verifyDetached([other.public], msg, HELLO_SIG));
    assert.ok(!verifyDetached([], msg, HELLO_SIG));
    // Same name, wrong key material.
    assert.ok(!verifyDetached([{ name: 'example-key-1', publicKey: other.public.publicKey }], msg, HELLO_SIG));
    // Right key among several, including one with the same name.
    assert.ok(
      verifyDetached([other.public, { name: 'example-key-1', publicKey: other.public.publicKey }, pk], msg, HELLO_SIG),
    );
    for (const bad of [
      '',
      'example-key-1',
      'example-key-1:',
      `:${b64}`,
      `example-key-1:${b64.slice(0, -4)}`,
      `example-key-1:${b64}\n`,
      `example-key-1:${b64} `,
      `Example-key-1:${b64}`,
      `example-key-1:${b64}AAAA`,
    ]) {
      assert.equal(verifyDetached([pk], msg, bad), false, bad);
    }
    assert.ok(!verifyDetached([{ name: 'example-key-1', publicKey: new Uint8Array(31) }], msg, HELLO_SIG));
  });

  it('signs and verifies any message, and matches tweetnacl directly', () => {
    fc.assert(
      fc.property(fc.string(), (msg) => {
        const sig = signDetached(sk, msg);
        assert.ok(sig.startsWith('example-key-1:'));
        assert.ok(verifyDetached([pk], msg, sig));
        assert.ok(!verifyDetached([pk], `${msg}x`, sig));
        const raw = nacl.sign.detached(new TextEncoder().encode(msg), sk.secretKey);
        assert.equal(sig, `example-key-1:${Buffer.from(raw).toString('base64')}`);
      }),
      { numRuns: 50 },
    );
  });
});

describe('native Ed25519', () => {
  it('derives the same key pairs as tweetnacl (libsodium) from any seed', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (seed) => {
        const theirs = nacl.sign.keyPair.fromSeed(seed);
        const parsed = parseSecretKey(`k-1:${Buffer.from(theirs.secretKey).toString('base64')}`);
        assert.deepEqual(Buffer.from(publicKeyOf(parsed).publicKey), Buffer.from(theirs.publicKey));
        // A secret key whose public half is not the seed's is refused.
        const wrong = Buffer.from(theirs.secretKey);
        wrong[40] = wrong[40]! ^ 1;
        assert.throws(() => parseSecretKey(`k-1:${wrong.toString('base64')}`), /public half does not match the seed/);
      }),
      { numRuns: 50 },
    );
    for (let i = 0; i < 5; i++) {
      const { secret, public: pub } = generateKeyPair(`g${i}-1`);
      assert.deepEqual(
        Buffer.from(nacl.sign.keyPair.fromSeed(secret.secretKey.subarray(0, 32)).secretKey),
        Buffer.from(secret.secretKey),
      );
      assert.deepEqual(Buffer.from(pub.publicKey), Buffer.from(secret.secretKey.subarray(32)));
    }
  });

  it('gives signatures byte-identical to tweetnacl (libsodium) that cross-verify with it', () => {
    for (let i = 0; i < 20; i++) {
      const { secret, public: pub } = generateKeyPair(`k${i}-1`);
      const message = `1;/nix/store/${'a'.repeat(32)}-x${i};sha256:${'0'.repeat(52)};${i * 977};`;
      const ours = signDetached(secret, message);
      const theirs = nacl.sign.detached(Buffer.from(message), secret.secretKey);
      assert.equal(ours, `k${i}-1:${Buffer.from(theirs).toString('base64')}`);
      assert.ok(verifyDetached([pub], message, ours));
      assert.ok(
        nacl.sign.detached.verify(Buffer.from(message), Buffer.from(ours.split(':')[1]!, 'base64'), pub.publicKey),
      );
      // A flipped bit anywhere fails.
      const bad = Buffer.from(ours.split(':')[1]!, 'base64');
      bad[i % 64] = bad[i % 64]! ^ 1;
      assert.equal(verifyDetached([pub], message, `k${i}-1:${bad.toString('base64')}`), false);
      assert.equal(verifyDetached([pub], `${message} `, ours), false);
    }
    // 32 bytes that are not a point on the curve verify nothing (and do not throw).
    assert.equal(
      verifyDetached(
        [{ name: 'k0-1', publicKey: new Uint8Array(32).fill(0xff) }],
        'x',
        `k0-1:${Buffer.alloc(64).toString('base64')}`,
      ),
      false,
    );
  });
});
