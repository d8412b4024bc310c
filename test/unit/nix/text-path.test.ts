import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDerivation } from '../../../src/nix/derivation.js';
import { textStorePath } from '../../../src/nix/text-path.js';

// Made by nix-instantiate (Nix 2.8): a derivation with an input derivation, a source added by
// builtins.toFile, and two outputs.
const TOP_DRV =
  'Derive([("dev","/nix/store/3v14ndvyh1wv4d01lkwg6mfrc0k10da7-top-dev","",""),' +
  '("out","/nix/store/lq4zl4if2pjrcfsqdf13g1h5c34vwz9i-top","","")],' +
  '[("/nix/store/p2qkh6lklg7zljx468xsl3gwif574nq4-dep.drv",["out"])],' +
  '["/nix/store/lxgl6azrqhc3gfnn8cdpp8ixpbrf18rx-script.sh"],"x86_64-linux","/bin/sh",' +
  '["/nix/store/lxgl6azrqhc3gfnn8cdpp8ixpbrf18rx-script.sh"],' +
  '[("builder","/bin/sh"),("dep","/nix/store/z4asv3j07d89ywjf8fxkn7sg6mf5s9q5-dep"),' +
  '("dev","/nix/store/3v14ndvyh1wv4d01lkwg6mfrc0k10da7-top-dev"),("name","top"),' +
  '("out","/nix/store/lq4zl4if2pjrcfsqdf13g1h5c34vwz9i-top"),("outputs","out dev"),("system","x86_64-linux")])';
const TOP_PATH = '/nix/store/69syx1n1y4qidxj0by44b2f9rs3yjrnr-top.drv';
const SCRIPT_PATH = '/nix/store/lxgl6azrqhc3gfnn8cdpp8ixpbrf18rx-script.sh';

test('a .drv text yields the path Nix gave it, its references being its inputs and sources', () => {
  const drv = parseDerivation(TOP_DRV);
  const references = [...Object.keys(drv.inputDrvs), ...drv.inputSrcs];
  assert.equal(textStorePath('top.drv', TOP_DRV, references), TOP_PATH);
  assert.equal(
    textStorePath('top.drv', Buffer.from(TOP_DRV), [...references].reverse()),
    TOP_PATH,
    'reference order does not matter',
  );
});

test('a text file without references (builtins.toFile)', () => {
  assert.equal(textStorePath('script.sh', 'echo hi > $out', []), SCRIPT_PATH);
});

test('any change to the text, the references, the name or the store changes the hash', () => {
  const drv = parseDerivation(TOP_DRV);
  const references = [...Object.keys(drv.inputDrvs), ...drv.inputSrcs];
  const hashOf = (path: string) => path.split('/').pop()!.slice(0, 32);
  const variants = [
    textStorePath('top.drv', TOP_DRV.replace('x86_64-linux', 'aarch64-linux'), references),
    textStorePath('top.drv', `${TOP_DRV} `, references),
    textStorePath('top.drv', TOP_DRV, references.slice(1)),
    textStorePath('tip.drv', TOP_DRV, references),
    textStorePath('top.drv', TOP_DRV, references, '/gnu/store'),
  ];
  for (const v of variants) assert.notEqual(hashOf(v), hashOf(TOP_PATH), v);
  assert.equal(new Set(variants.map(hashOf)).size, variants.length);
});
