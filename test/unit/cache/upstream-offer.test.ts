// Which upstream narinfos narhub accepts, and the offer it builds from them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { acceptUpstreamNarinfo } from '../../../src/cache/upstream/offer.js';
import { normaliseUpstream } from '../../../src/cache/upstream/upstream-spec.js';
import type { UpstreamRow } from '../../../src/db/upstreams-repo.js';
import { formatHash, parseHash } from '../../../src/nix/hash.js';
import { formatNarInfo, type NarInfo } from '../../../src/nix/narinfo.js';
import { formatPublicKey, generateKeyPair, signNarInfo } from '../../../src/nix/signing.js';
import { makePath } from '../../helpers/build-app.js';

const upstreamKey = generateKeyPair('up-1');
const ownKey = generateKeyPair('main-1');
const upstream: UpstreamRow = {
  id: 1,
  cacheId: 1,
  url: 'https://cache.example.org/sub',
  publicKeys: [formatPublicKey(upstreamKey.public)],
  priority: 40,
  declared: false,
  createdAt: 0,
};
const OWN = new Set(['main-1']);

function signed(info: NarInfo, ...keys: (typeof upstreamKey)[]): string {
  return formatNarInfo({ ...info, sigs: [...info.sigs, ...keys.map((k) => signNarInfo(k.secret, info))] });
}

test("a signed narinfo becomes an offer named by its FileHash, hashes in nix32, the upstream's signature kept", () => {
  const p = makePath({ compression: 'xz', references: [] });
  const info = p.info({
    url: 'nar/whatever-the-upstream-calls-it.nar.xz',
    narHash: formatHash(parseHash(p.info().narHash), 'base16'),
  });
  const offer = acceptUpstreamNarinfo(upstream, 1, p.hashPart, signed(info, upstreamKey), OWN);
  assert.equal(offer.fileName, p.fileName);
  assert.equal(offer.info.url, `nar/${p.fileName}`);
  assert.equal(offer.info.narHash, p.info().narHash, 'nix32');
  assert.equal(offer.narUrl, 'https://cache.example.org/sub/nar/whatever-the-upstream-calls-it.nar.xz');
  assert.equal(offer.fileSize, p.file.length);
  assert.equal(offer.info.sigs.length, 1);
  assert.ok(offer.info.sigs[0]!.startsWith('up-1:'));
});

test('an absolute NAR URL is followed as given; a raw NAR without FileHash is named by its NarHash', () => {
  const p = makePath({ compression: 'none' });
  const info = p.info({ url: 'https://nars.example.net/x.nar' });
  delete info.fileHash;
  delete info.fileSize;
  const offer = acceptUpstreamNarinfo(upstream, 1, p.hashPart, signed(info, upstreamKey), OWN);
  assert.equal(offer.narUrl, 'https://nars.example.net/x.nar');
  assert.equal(offer.fileName, p.fileName);
  assert.equal(offer.fileSize, p.nar.length);
});

test("a signature under one of the cache's own key names is dropped, whoever made it", () => {
  const p = makePath();
  const offer = acceptUpstreamNarinfo(upstream, 1, p.hashPart, signed(p.info(), upstreamKey, ownKey), OWN);
  assert.deepEqual(
    offer.info.sigs.map((s) => s.slice(0, s.indexOf(':'))),
    ['up-1'],
  );
});

test('narinfos narhub cannot vouch for are refused, each with its reason', () => {
  const p = makePath({ compression: 'zstd' });
  const stranger = generateKeyPair('up-1'); // the right name, the wrong key
  const noFileHash = p.info();
  delete noFileHash.fileHash;
  const cases: [string, string, RegExp][] = [
    [
      signed(p.info()),
      p.hashPart,
      /not signed by any key upstream https:\/\/cache\.example\.org\/sub is trusted under/,
    ],
    [signed(p.info(), stranger), p.hashPart, /not signed by any key/],
    [signed(p.info(), upstreamKey), makePath().hashPart, /answered for .* when asked for/],
    [signed(noFileHash, upstreamKey), p.hashPart, /without FileHash cannot be verified/],
    [signed(p.info({ compression: 'lz4' }), upstreamKey), p.hashPart, /Compression lz4 cannot be verified/],
    [signed(p.info({ url: 'ftp://x/nar' }), upstreamKey), p.hashPart, /not http: or https:/],
    ['StorePath: nonsense\n', p.hashPart, /StorePath/],
  ];
  for (const [text, hashPart, reason] of cases) {
    assert.throws(() => acceptUpstreamNarinfo(upstream, 1, hashPart, text, OWN), reason);
  }
  const raw = makePath({ compression: 'none' });
  assert.throws(
    () => acceptUpstreamNarinfo(upstream, 1, raw.hashPart, signed(raw.info({ fileSize: 1 }), upstreamKey), OWN),
    /FileSize 1 of a raw NAR is not its NarSize/,
  );
});

test('an upstream is spelled one way: no trailing slash, valid keys once each, a priority of at least 0', () => {
  const k = formatPublicKey(upstreamKey.public);
  assert.deepEqual(normaliseUpstream({ url: 'https://Cache.Example.org:443/a/b//', publicKeys: [k, `${k} ${k}`] }), {
    url: 'https://cache.example.org/a/b',
    publicKeys: [k],
    priority: 50,
  });
  assert.throws(() => normaliseUpstream({ url: 'https://c.example', publicKeys: [] }), /at least one public key/);
  assert.throws(
    () => normaliseUpstream({ url: 'https://c.example', publicKeys: ['k:abc'] }),
    /KEY_INVALID|decodes|base64/,
  );
  assert.throws(() => normaliseUpstream({ url: 'not a url', publicKeys: [k] }), /is not a URL/);
  assert.throws(() => normaliseUpstream({ url: 'https://c.example/#x', publicKeys: [k] }), /query or a fragment/);
  assert.throws(() => normaliseUpstream({ url: 'https://c.example', publicKeys: [k], priority: 1.5 }), /whole number/);
});
