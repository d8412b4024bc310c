import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import {
  contentAddressedStorePath,
  contentHashNeeded,
  formatContentAddress,
  parseContentAddress,
} from '../../../src/nix/content-address.js';
import { formatHash, hashesEqual, parseHash } from '../../../src/nix/hash.js';
import { NarContentHasher } from '../../../src/nix/nar/content-hasher.js';
import { NarParser } from '../../../src/nix/nar/nar-parser.js';
import { narFromTree, type NarTree } from '../../../src/nix/nar/nar-writer.js';

// Every path, NarHash and CA below was printed by the real Nix 2.8.0 (`nix path-info --json`) for:
//   printf 'narhub ca vector\n' > flat.txt; cp flat.txt exe.txt; chmod +x exe.txt
//   mkdir dir; printf 'x\n' > dir/a; printf '#!/bin/sh\n' > dir/run; chmod +x dir/run; ln -s a dir/link
//   nix-store --add-fixed ALGO flat.txt; nix-store --add-fixed --recursive ALGO dir   (ALGO: sha256 sha1 sha512 md5)
//   nix-store --add-fixed sha256 exe.txt; nix-store --add-fixed --recursive sha256 flat.txt
//   builtins.toFile "narhub-ca-a.txt" "narhub ca text a\n"
//   builtins.toFile "narhub-ca-b.txt" "refers to ${a}\n"
const FLAT = Buffer.from('narhub ca vector\n');
const FLAT_NAR_HASH = 'sha256-gVUMLs9KJ+SZfxHsaSnZzpWpKkE9kJ5KEgdOUuIWkPU=';
const DIR: NarTree = {
  type: 'directory',
  entries: {
    a: { type: 'regular', contents: Buffer.from('x\n') },
    link: { type: 'symlink', target: 'a' },
    run: { type: 'regular', contents: Buffer.from('#!/bin/sh\n'), executable: true },
  },
};
const DIR_NAR_HASH = 'sha256-5q/IhNuKRk3nih3dY3qHPkY7BnYhYBWtUQhdY3kux+I=';
const TEXT_A = Buffer.from('narhub ca text a\n');
const TEXT_A_PATH = '/nix/store/cv1qrzjnq93bpinya0p6s8z44mxm387x-narhub-ca-a.txt';
const TEXT_A_BASENAME = TEXT_A_PATH.slice('/nix/store/'.length);

interface Vector {
  path: string;
  ca: string;
  tree: NarTree;
  narHash: string;
  references?: string[];
}

const VECTORS: Vector[] = [
  {
    path: '/nix/store/27qfy70vp4zm0c6glcr887nzd4mcfwcb-flat.txt',
    ca: 'fixed:sha256:0avmg4fcapzgd5skxzgwa9ra5b9zvvn4vs10z7xwq1s5xb25g4qi',
    tree: { type: 'regular', contents: FLAT },
    narHash: FLAT_NAR_HASH,
  },
  {
    path: '/nix/store/77mf75wi5my6ib9yzw5vaxb68phc9yvy-flat.txt',
    ca: 'fixed:sha1:dcj519wkr95vqddq840c048lxdszqj6g',
    tree: { type: 'regular', contents: FLAT },
    narHash: FLAT_NAR_HASH,
  },
  {
    path: '/nix/store/6wxsw75hj6pbgs7834ag3z4636k1c22j-flat.txt',
    ca:
      'fixed:sha512:1h825ii3ir49bn2jvd4cniakb6vw33s5gappy3xljn0yy47qna0' +
      'hsrqhkqzxmqa4x655w8m4kvp1zycdj9yvpbdw9fzv6kdnmwlwndm',
    tree: { type: 'regular', contents: FLAT },
    narHash: FLAT_NAR_HASH,
  },
  {
    path: '/nix/store/9x9axpkvvgij3m2j41pj3j610lrijgv7-flat.txt',
    ca: 'fixed:md5:4gyr8wm63hracdxb7zvssv734z',
    tree: { type: 'regular', contents: FLAT },
    narHash: FLAT_NAR_HASH,
  },
  {
    // Nix 2.8 keeps the executable bit of a file it adds flat; the flat hash does not cover it.
    path: '/nix/store/h65vnj3yfm2j05sw65h8rks9dsgrxbpv-exe.txt',
    ca: 'fixed:sha256:0avmg4fcapzgd5skxzgwa9ra5b9zvvn4vs10z7xwq1s5xb25g4qi',
    tree: { type: 'regular', contents: FLAT, executable: true },
    narHash: 'sha256-2Px0JVYZLMMknFbL0Fem0sBTclkcqBD2vcy8AkJV7DY=',
  },
  {
    path: '/nix/store/m9p92ka93g6v9wlr6kmp7575rysqq3sj-flat.txt',
    ca: 'fixed:r:sha256:1xch2vi54kh72959x41x84mak5ffv4lnkv0igycy89sarwp0qmc1',
    tree: { type: 'regular', contents: FLAT },
    narHash: FLAT_NAR_HASH,
  },
  {
    path: '/nix/store/pgla4hk89fm68ny614m6xg3xf320bnhv-dir',
    ca: 'fixed:r:sha256:1qn75rwn6p88a6niaq11fq33niiyhxx67p8xibklsilavf2cibz6',
    tree: DIR,
    narHash: DIR_NAR_HASH,
  },
  {
    path: '/nix/store/07nhrq08qyql7vj598pz6p927z3hw7bh-dir',
    ca: 'fixed:r:sha1:8264cdmidl1yhbzh0n0362cjl9palkrx',
    tree: DIR,
    narHash: DIR_NAR_HASH,
  },
  {
    path: '/nix/store/l8gh95w7j8a7h1r39dqh4v7ajkkwcgxm-dir',
    ca:
      'fixed:r:sha512:0afn13qxh02a73xxmdf0ama1cm34whsdr6ai8zx4sy0carhi5d2' +
      '235qwb630wa6rsnw2knz4wfrya2b9ix94xfr43xr7v25q3nsmdnd',
    tree: DIR,
    narHash: DIR_NAR_HASH,
  },
  {
    path: '/nix/store/v7gi5sci8crwb34gkhq7z54armxqw9fg-dir',
    ca: 'fixed:r:md5:39h7s1kz49ipa8wycwj5f3qa1b',
    tree: DIR,
    narHash: DIR_NAR_HASH,
  },
  {
    path: TEXT_A_PATH,
    ca: 'text:sha256:0m5zpmlps3h75yihwlix4a4vm54q0fa6ivbrbj61ka3wxv7s55xf',
    tree: { type: 'regular', contents: TEXT_A },
    narHash: 'sha256-ITc7VhG2Njnny3xrFfb5YYK7NUxyJHa9ibt/gIOQfig=',
  },
  {
    path: '/nix/store/d883iza8s03b5ym4mjyasabplf1y4x3n-narhub-ca-b.txt',
    ca: 'text:sha256:0mys4mblga2gmbid864v5rn9c8cf56zxm14xgvpa4a57j2k810a3',
    tree: { type: 'regular', contents: Buffer.from(`refers to ${TEXT_A_PATH}\n`) },
    narHash: 'sha256-gGUC1zIDRH7u9u3Dio+BZj5AMwWq8Ly6OQURb1o+LrI=',
    references: ['cv1qrzjnq93bpinya0p6s8z44mxm387x-narhub-ca-a.txt'],
  },
];

const nameOf = (path: string) => path.slice('/nix/store/'.length + 33);

/** Runs the hasher over the NAR in the writer's small chunks, beside the parser, as an upload does. */
function contentHashOf(tree: NarTree, ca: string) {
  const parsed = parseContentAddress(ca);
  const needs = contentHashNeeded(parsed) ?? { over: 'nar' as const, algo: 'sha256' as const };
  const parser = new NarParser({ listing: false });
  const hasher = new NarContentHasher(needs);
  for (const chunk of narFromTree(tree)) {
    parser.update(chunk);
    hasher.update(chunk);
  }
  return { nar: parser.finish(), result: hasher.finish(), parsed };
}

for (const v of VECTORS) {
  const kind = v.ca.split(':').slice(0, -1).join(':');
  test(`Nix 2.8's ${kind} path ${nameOf(v.path)}: path and content hash agree`, () => {
    const ca = parseContentAddress(v.ca);
    const refs = v.references ?? [];
    assert.equal(contentAddressedStorePath(nameOf(v.path), ca, refs, false), v.path);
    const { nar, result } = contentHashOf(v.tree, v.ca);
    assert.ok(hashesEqual(parseHash(nar.narHash), parseHash(v.narHash)), 'the test NAR is the one Nix made');
    assert.ok('hash' in result, JSON.stringify(result));
    assert.equal(formatHash(parseHash(result.hash), 'nix32'), v.ca.replace(/^(text|fixed)(:r)?:/, ''));
  });
}

test('fixed:r:sha256 needs no hash beyond the NarHash, which is its hash', () => {
  const v = VECTORS.find((x) => x.ca.startsWith('fixed:r:sha256'))!;
  const ca = parseContentAddress(v.ca);
  assert.equal(contentHashNeeded(ca), undefined);
  assert.ok(hashesEqual(ca.hash, parseHash(v.narHash)));
  assert.deepEqual(contentHashNeeded(parseContentAddress(VECTORS[0]!.ca)), { over: 'file', algo: 'sha256' });
  assert.deepEqual(contentHashNeeded(parseContentAddress(VECTORS[7]!.ca)), { over: 'nar', algo: 'sha1' });
});

test('a CA hash in base16 or base64 gives the same path as Nix32; SRI is refused, as Nix refuses it', () => {
  const v = VECTORS[0]!;
  const hash = parseContentAddress(v.ca).hash;
  for (const encoding of ['base16', 'base64'] as const) {
    const text = `fixed:${formatHash(hash, encoding)}`;
    const ca = parseContentAddress(text);
    assert.equal(contentAddressedStorePath(nameOf(v.path), ca, [], false), v.path, text);
    assert.equal(formatContentAddress(ca), v.ca, 'written back as Nix writes it');
  }
  assert.throws(() => parseContentAddress(`fixed:${formatHash(hash, 'sri')}`), { code: 'HASH_INVALID' });
  assert.throws(() => parseContentAddress('text:sha1:dcj519wkr95vqddq840c048lxdszqj6g'), /text must use sha256/);
  assert.throws(() => parseContentAddress('source:sha256:0avmg4fcapzgd5skxzgwa9ra5b9zvvn4vs10z7xwq1s5xb25g4qi'));
});

test('references: they change a text or recursive sha256 path; other fixed paths cannot have any', () => {
  const text = VECTORS.find((x) => x.references !== undefined)!;
  const ca = parseContentAddress(text.ca);
  assert.notEqual(contentAddressedStorePath(nameOf(text.path), ca, [], false), text.path, 'without its reference');
  assert.throws(
    () => contentAddressedStorePath(nameOf(text.path), ca, text.references!, true),
    /cannot refer to itself/,
  );
  const rec = parseContentAddress(VECTORS[6]!.ca);
  const plain = contentAddressedStorePath('dir', rec, [], false);
  const withRef = contentAddressedStorePath('dir', rec, [TEXT_A_BASENAME], false);
  const withSelf = contentAddressedStorePath('dir', rec, [], true);
  assert.equal(new Set([plain, withRef, withSelf]).size, 3, 'a reference and a self-reference each change the path');
  for (const v of [VECTORS[0]!, VECTORS[7]!]) {
    assert.throws(
      () => contentAddressedStorePath(nameOf(v.path), parseContentAddress(v.ca), [TEXT_A_BASENAME], false),
      /cannot have references/,
    );
  }
  assert.throws(
    () => contentAddressedStorePath('x', parseContentAddress(`fixed:git:${VECTORS[1]!.ca.slice(6)}`), [], false),
    /git content addresses/,
  );
});

test('a flat or text hash of a directory or symlink NAR is refused with the reason', () => {
  for (const tree of [DIR, { type: 'symlink', target: 'a' } as NarTree]) {
    const { result } = contentHashOf(tree, VECTORS[0]!.ca);
    assert.deepEqual(result, { problem: 'the NAR is not a single regular file' });
  }
});

test('a flat hash covers the contents only, whatever the file size and however the NAR is split', () => {
  for (const size of [0, 1, 7, 8, 9, 100_000]) {
    const contents = Buffer.alloc(size, 0x61);
    const hasher = new NarContentHasher({ over: 'file', algo: 'sha1' });
    const nar = Buffer.concat([...narFromTree({ type: 'regular', contents, executable: size % 2 === 1 })]);
    for (let i = 0; i < nar.length; i += 5) hasher.update(nar.subarray(i, i + 5));
    const result = hasher.finish();
    assert.deepEqual(result, { hash: `sha1:${createHashHex('sha1', contents)}` }, `size ${size}`);
  }
});

function createHashHex(algo: string, data: Uint8Array): string {
  return createHash(algo).update(data).digest('hex');
}
