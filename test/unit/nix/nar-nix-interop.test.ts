/**
 * The NAR parser, writer and listing against the real Nix 2.8: `nix-store --dump` bytes,
 * `nix-hash` and the `.ls` file `nix copy` writes. Needs nix on PATH and writes to /nix/store;
 * fails (never skips) without it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { formatListing } from '../../../src/nix/nar/listing.js';
import { NarParser, type NarSummary } from '../../../src/nix/nar/nar-parser.js';
import { narFromTree, type NarTree } from '../../../src/nix/nar/nar-writer.js';
import { createNixEnv, hashPart, type NixEnv } from '../../helpers/nix.js';
import { makeTempDir } from '../../helpers/tmp.js';

const enc = new TextEncoder();
const file = (contents: string | Uint8Array, executable = false): NarTree => ({
  type: 'regular',
  contents: typeof contents === 'string' ? enc.encode(contents) : contents,
  executable,
});
const symlink = (target: string): NarTree => ({ type: 'symlink', target });
/** Null-prototype entries, so `__proto__` is an ordinary name. */
function dir(pairs: [string, NarTree][]): NarTree {
  const entries = Object.create(null) as Record<string, NarTree>;
  for (const [name, node] of pairs) entries[name] = node;
  return { type: 'directory', entries };
}

/** Writes `tree` to `path` (Buffer paths, so any bytes work). */
function materialize(path: Buffer, tree: NarTree): void {
  switch (tree.type) {
    case 'regular':
      writeFileSync(path, tree.contents);
      chmodSync(path, tree.executable === true ? 0o755 : 0o644);
      break;
    case 'symlink':
      symlinkSync(tree.target, path);
      break;
    case 'directory':
      mkdirSync(path);
      for (const name of Object.keys(tree.entries)) {
        materialize(Buffer.concat([path, Buffer.from('/'), Buffer.from(name)]), tree.entries[name]!);
      }
      break;
  }
}

function dump(nix: NixEnv, path: string): Buffer {
  return execFileSync('nix-store', ['--dump', path], { env: nix.env, maxBuffer: 256 << 20 });
}

/** Parses in random-sized chunks, like a socket would deliver them. */
function parseRandomChunks(bytes: Buffer): NarSummary {
  const p = new NarParser();
  for (let i = 0; i < bytes.length; ) {
    const n = 1 + Math.floor(Math.random() * 70_000);
    p.update(bytes.subarray(i, i + n));
    i += n;
  }
  return p.finish();
}

/** The `.ls` that `nix copy` writes for `path` with write-nar-listing=1. */
async function nixListing(nix: NixEnv, path: string): Promise<Buffer> {
  const storePath = (await nix.run('nix', ['store', 'add-path', path, '--name', 'narhub-nar-test'])).stdout.trim();
  const cache = join(nix.dir, 'cache');
  await nix.run('nix', ['copy', '--to', `file://${cache}?write-nar-listing=1&compression=none`, storePath]);
  return readFileSync(join(cache, `${hashPart(storePath)}.ls`));
}

describe('NAR handling agrees with Nix 2.8', () => {
  it('a tree with files, executables, symlinks, nested dirs and odd names', async (t) => {
    const nix = await createNixEnv(t);
    const root = join(await makeTempDir(t, 'narhub-nar-'), 'tree');
    const tree = dir([
      ['hello.txt', file('hello\n')],
      ['empty', file('')],
      ['B', file('upper case sorts first')],
      ['big.bin', file(randomBytes(3 * 1024 * 1024 + 5))],
      [
        'bin',
        dir([
          ['run', file('#!/bin/sh\necho hi\n', true)],
          ['exact8!!', file('12345678', true)],
        ]),
      ],
      ['link', symlink('bin/run')],
      ['abs-link', symlink('/nix/store/00000000000000000000000000000000-missing')],
      ['odd link', symlink('../wéird "target"\\ \t')],
      [
        'deep',
        dir([
          ['a', dir([['b', dir([['c', dir([['d', file('deep')]])]])]])],
          ['empty-dir', dir([])],
        ]),
      ],
      [
        'names',
        dir([
          ['with space', file('1')],
          ['quote"', file('2')],
          ['back\\slash', file('3')],
          ['tab\there', file('4')],
          ['new\nline', file('5')],
          ['ctl\x01\x08\x0c\x1f\x7f', file('6')],
          ['é', file('7')],
          ['日本語', file('8')],
          ['😀', file('9')],
          ['\uff61', file('10')],
          ['10', file('11')],
          ['9', file('12')],
          ['__proto__', file('13')],
          ['constructor', file('14')],
          ['-dash', file('15')],
          ['.hidden', file('16')],
          ['...', file('17')],
          ['x'.repeat(255), file('18')],
        ]),
      ],
    ]);
    materialize(Buffer.from(root), tree);

    const bytes = dump(nix, root);
    // Our writer produces exactly Nix's bytes (so benchmarks and tests use realistic NARs).
    assert.ok(Buffer.concat([...narFromTree(tree)]).equals(bytes), 'narFromTree matches nix-store --dump');

    const summary = parseRandomChunks(bytes);
    const nixHash = (await nix.run('nix-hash', ['--type', 'sha256', '--base32', root])).stdout.trim();
    assert.equal(summary.narHash, `sha256:${nixHash}`);
    assert.equal(summary.narSize, bytes.length);

    // All names are UTF-8, so the listing must be byte-for-byte what Nix writes.
    const ls = await nixListing(nix, root);
    assert.equal(formatListing(summary.listing!), ls.toString('utf8'));
    assert.ok(Buffer.from(formatListing(summary.listing!)).equals(ls));
  });

  it('names and targets that are not UTF-8 (latin1 policy)', async (t) => {
    const nix = await createNixEnv(t);
    const root = Buffer.from(join(await makeTempDir(t, 'narhub-nar-'), 'tree'));
    const at = (...parts: (string | number[])[]): Buffer =>
      Buffer.concat([
        root,
        ...parts.flatMap((p) => [Buffer.from('/'), typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)]),
      ]);
    mkdirSync(root);
    writeFileSync(at([0xff]), 'a');
    writeFileSync(at([0x61, 0xc3]), 'bb');
    writeFileSync(at('plain'), 'ccc');
    mkdirSync(at([0xfe, 0x64]));
    writeFileSync(at([0xfe, 0x64], [0x80]), 'dddd');
    symlinkSync(Buffer.from([0x2e, 0x2f, 0xff, 0xfe]), at('badlink'));

    const bytes = dump(nix, root.toString());
    const summary = parseRandomChunks(bytes);
    const nixHash = (await nix.run('nix-hash', ['--type', 'sha256', '--base32', root.toString()])).stdout.trim();
    assert.equal(summary.narHash, `sha256:${nixHash}`);
    assert.equal(summary.narSize, bytes.length);

    // Nix writes the raw bytes; read as latin1 they are exactly our policy (all else is ASCII).
    const ls = await nixListing(nix, root.toString());
    assert.deepEqual(JSON.parse(formatListing(summary.listing!)), JSON.parse(ls.toString('latin1')));
    assert.match(formatListing(summary.listing!), /"\u00ff":\{"type":"regular","size":1,/);
  });

  it('a single regular file and a single symlink at the root', async (t) => {
    const nix = await createNixEnv(t);
    const base = await makeTempDir(t, 'narhub-nar-');
    writeFileSync(join(base, 'f'), 'hello\n');
    const bytes = dump(nix, join(base, 'f'));
    const summary = parseRandomChunks(bytes);
    // The 120-byte NAR of `hello\n` (docs/protocol.md, NAR).
    assert.equal(summary.narHash, 'sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw');
    assert.equal(formatListing(summary.listing!), (await nixListing(nix, join(base, 'f'))).toString());

    symlinkSync('somewhere/else', join(base, 'l'));
    const linkBytes = dump(nix, join(base, 'l'));
    assert.ok(Buffer.concat([...narFromTree(symlink('somewhere/else'))]).equals(linkBytes));
    const linkHash = (await nix.run('nix-hash', ['--type', 'sha256', '--base32', join(base, 'l')])).stdout.trim();
    assert.equal(parseRandomChunks(linkBytes).narHash, `sha256:${linkHash}`);
  });
});
