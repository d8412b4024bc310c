// The NAR pass on a codec thread (io/nar-pass.ts) and the SHA-256 sink beside it: what
// they report is what the NAR parser on the event loop reports of the same bytes (NarHash,
// NarSize, listing, and the very same NAR_INVALID errors), in every compression narhub accepts;
// corrupt compressed input is refused; zstd output is the NAR's; memory stays bounded when the
// reader stops; and the event loop keeps turning while they work.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { brotliCompressSync } from 'node:zlib';
import { decompress as zstdDecompress } from 'zstd-napi';
import { NarhubError, isNarhubError } from '../../../src/errors.js';
import { createDecompressor, type Compression } from '../../../src/io/compression.js';
import { createNarPass, type NarPassOptions } from '../../../src/io/nar-pass.js';
import { Sha256Sink } from '../../../src/io/sha256-sink.js';
import { formatListing } from '../../../src/nix/nar/listing.js';
import { NarParser } from '../../../src/nix/nar/nar-parser.js';
import { narFromTree, type NarTree } from '../../../src/nix/nar/nar-writer.js';
import { loopTurnsDuring } from '../../helpers/loop-turns.js';

const narOf = (tree: NarTree): Buffer => Buffer.concat([...narFromTree(tree)]);

const ALL: Compression[] = ['none', 'zstd', 'gzip', 'br', 'xz', 'bzip2'];

/** Packs with the real command-line tools (brotli's may be missing: zlib then). */
function pack(c: Compression, data: Buffer): Buffer {
  const opts = { input: data, maxBuffer: 1 << 30 };
  switch (c) {
    case 'none':
      return data;
    case 'zstd':
      return execFileSync('zstd', ['-c', '-q', '-3'], opts);
    case 'gzip':
      return execFileSync('gzip', ['-c'], opts);
    case 'br':
      return brotliCompressSync(data);
    case 'xz':
      return execFileSync('xz', ['-c', '-T1'], opts);
    case 'bzip2':
      return execFileSync('bzip2', ['-c', '-1'], opts);
  }
}

function chunked(bytes: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return Readable.from(parts, { objectMode: false });
}

/** What the parser on this thread says of `nar`: its summary with the listing formatted, or its error. */
function onLoop(nar: Buffer): { narHash: string; narSize: number; listing: string } | NarhubError {
  const parser = new NarParser();
  try {
    parser.update(nar);
    const s = parser.finish();
    return { narHash: s.narHash, narSize: s.narSize, listing: formatListing(s.listing!) };
  } catch (err) {
    assert.ok(isNarhubError(err));
    return err;
  }
}

/** The parser on this thread as a stream: each chunk parsed as it is written, NarHash at the end. */
function parserSink(): Writable & { narHash(): string } {
  const parser = new NarParser({ listing: false });
  let narHash: string | undefined;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      try {
        parser.update(chunk);
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
    final(callback) {
      try {
        narHash = parser.finish().narHash;
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
  });
  return Object.assign(sink, {
    narHash: () => {
      if (narHash === undefined) throw new Error('the parser has not finished');
      return narHash;
    },
  });
}

/** Runs `file` through a NAR pass (a sink unless `compress`); its result and output. */
async function pass(file: Buffer, chunkSize: number, opts: NarPassOptions & { decompress?: Compression }) {
  const { input, pass: p } = createNarPass(opts);
  const out: Buffer[] = [];
  if (opts.compress) p.on('data', (chunk: Buffer) => out.push(chunk));
  const [written, result] = await Promise.allSettled([pipeline(chunked(file, chunkSize), input), p.result()]);
  // (The writer may have finished before a failure at the very end of the NAR.)
  if (result.status === 'rejected') throw result.reason;
  assert.equal(written.status, 'fulfilled');
  return { ...result.value, out: Buffer.concat(out), p };
}

/** Names that mean something to JavaScript objects, multi-byte UTF-8, characters JSON escapes. */
function awkwardTree(): NarTree {
  const entries = Object.create(null) as Record<string, NarTree>;
  // biome-ignore lint/complexity/useLiteralKeys: the point is a key JavaScript treats specially
  // biome-ignore lint/suspicious/noProto: likewise
  entries['__proto__'] = { type: 'regular', contents: Buffer.from('p') };
  // biome-ignore lint/complexity/useLiteralKeys: typed as Function when written with a dot
  entries['constructor'] = { type: 'regular', contents: Buffer.from('c') };
  entries['caf\u00e9'] = { type: 'symlink', target: 'constructor' };
  entries.lib = {
    type: 'directory',
    entries: {
      'big.so': {
        type: 'regular',
        executable: true,
        contents: Buffer.concat([randomBytes(1024 * 1024), Buffer.alloc(2 * 1024 * 1024 + 5, 'x')]),
      },
      empty: { type: 'directory', entries: {} },
      'line\nbreak': { type: 'regular', contents: Buffer.from('"quoted"\\') },
    },
  };
  return { type: 'directory', entries };
}

const TREES: [string, NarTree][] = [
  ['one empty file', { type: 'regular', contents: Buffer.alloc(0) }],
  ['an executable', { type: 'regular', executable: true, contents: Buffer.from('#!/bin/sh\n') }],
  ['a symlink', { type: 'symlink', target: '../a/b' }],
  ['a tree with awkward names', awkwardTree()],
];
const BIG = narOf(TREES[3]![1]);

test('a raw NAR: the NarHash, NarSize and listing the validator on the loop reports, in any chunking', async () => {
  for (const [what, tree] of TREES) {
    const nar = narOf(tree);
    const want = onLoop(nar);
    assert.ok(!(want instanceof NarhubError), what);
    if (tree.type === 'directory') assert.match(want.listing, /"__proto__":\{"type":"regular","size":1,/, what);
    for (const size of [nar.length, 65536, 1000, 7]) {
      if (size === 7 && nar.length > 100_000) continue;
      const { narHash, narSize, listing } = await pass(nar, size, { listing: true });
      assert.deepEqual({ narHash, narSize, listing }, want, `${what}, chunks of ${size}`);
    }
    const bare = await pass(nar, 4096, { listing: false });
    assert.deepEqual([bare.narHash, bare.narSize, bare.listing], [want.narHash, want.narSize, undefined], what);
  }
});

test('a compressed NAR, in every compression, as the real tools pack it', async () => {
  const want = onLoop(BIG);
  assert.ok(!(want instanceof NarhubError));
  for (const c of ALL) {
    const file = pack(c, BIG);
    for (const size of [file.length, 65536, 999]) {
      const { narHash, narSize, listing } = await pass(file, size, { listing: true, decompress: c });
      assert.deepEqual({ narHash, narSize, listing }, want, `${c}, chunks of ${size}`);
    }
  }
  // Several frames, members or streams in a row (as parallel compressors write them), and a
  // zstd skippable frame first.
  const half = BIG.length >> 1;
  for (const c of ['zstd', 'gzip', 'xz', 'bzip2'] as const) {
    const two = Buffer.concat([pack(c, BIG.subarray(0, half)), pack(c, BIG.subarray(half))]);
    assert.equal(
      (await pass(two, 10_000, { listing: false, decompress: c })).narHash,
      want.narHash,
      `${c}, two streams`,
    );
  }
  const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]), pack('zstd', BIG)]);
  assert.equal((await pass(skippable, 65536, { listing: false, decompress: 'zstd' })).narHash, want.narHash);
});

test('an invalid NAR fails with the NarhubError, message and offset the loop gives, in every compression', async () => {
  const cases: [string, Buffer][] = [
    ['non-zero padding of the magic', Buffer.concat([BIG.subarray(0, 22), Buffer.from([1]), BIG.subarray(23)])],
    ['trailing bytes', Buffer.concat([BIG, Buffer.alloc(8)])],
    ['truncated in a file', BIG.subarray(0, BIG.length - 100)],
    ['truncated at a token boundary', BIG.subarray(0, 8 + 16)],
    ['not a NAR at all', Buffer.from('this is not a Nix archive at all, not even close')],
    ['empty', Buffer.alloc(0)],
  ];
  for (const [what, nar] of cases) {
    const want = onLoop(nar);
    assert.ok(want instanceof NarhubError, what);
    for (const c of ALL) {
      const file = pack(c, nar);
      const err: unknown = await pass(file, 4096, { listing: true, decompress: c }).then(
        () => assert.fail(`${what}, ${c}: accepted`),
        (e: unknown) => e,
      );
      assert.ok(isNarhubError(err), `${what}, ${c}: ${String(err)}`);
      assert.equal(err.code, 'NAR_INVALID', what);
      assert.equal(err.message, want.message, `${what}, ${c}`);
      assert.deepEqual(err.details, want.details, `${what}, ${c}`);
    }
  }
});

test('a corrupt compressed stream is refused as the decoder on the loop refuses it', async () => {
  for (const c of ALL.filter((x) => x !== 'none')) {
    const file = pack(c, BIG);
    const damaged = Buffer.from(file);
    for (let i = damaged.length >> 1; i < (damaged.length >> 1) + 64; i++) damaged[i] = damaged[i]! ^ 0x55;
    const cases: [string, Buffer][] = [
      ['cut in half', file.subarray(0, file.length >> 1)],
      ['without its last bytes', file.subarray(0, file.length - 7)],
      ['damaged in the middle', damaged],
    ];
    // brotli's framing cannot tell garbage after the stream apart.
    if (c !== 'br') cases.push(['garbage after the stream', Buffer.concat([file, Buffer.from('garbage!garbage!')])]);
    for (const [what, input] of cases) {
      const parser = parserSink();
      const loop = await pipeline(chunked(input, 65536), createDecompressor(c), parser).then(
        () => parser.narHash(),
        () => undefined,
      );
      const err: unknown = await pass(input, 65536, { listing: true, decompress: c }).then(
        (r) => {
          // Damage the format cannot see (brotli has no checksum, and here hit stored random
          // bytes): accepted on the loop too, with the same (other) NarHash.
          assert.equal(r.narHash, loop, `${c} ${what}: accepted here, not on the loop`);
          return undefined;
        },
        (e: unknown) => e,
      );
      if (err === undefined) continue;
      assert.equal(loop, undefined, `${c} ${what}: refused here, accepted on the loop`);
      // The decoder notices, or garbage it let through makes an invalid NAR (zstd, gzip and
      // brotli check their data only at the end of a frame).
      const decoderSays = new RegExp(`^${c} decompression failed: `);
      assert.ok(
        (isNarhubError(err) && err.code === 'NAR_INVALID') ||
          (!isNarhubError(err) && decoderSays.test((err as Error).message)),
        `${c} ${what}: ${String(err)}`,
      );
    }
  }
});

test('with compress, the output is the NAR in zstd, hashed and counted, whatever it came in', async () => {
  const want = onLoop(BIG);
  assert.ok(!(want instanceof NarhubError));
  for (const c of ['none', 'xz', 'bzip2'] as const) {
    for (const workers of [0, 2]) {
      const r = await pass(pack(c, BIG), 65536, { listing: false, decompress: c, compress: { level: 3, workers } });
      assert.equal(r.narHash, want.narHash, c);
      assert.ok(zstdDecompress(r.out).equals(BIG), `${c}, ${workers} workers`);
      assert.equal(r.p.bytes, r.out.length);
      assert.deepEqual(Buffer.from(r.p.digest()), createHash('sha256').update(r.out).digest());
    }
  }
  // An invalid NAR fails the compressing pass as it fails the sink.
  const bad = BIG.subarray(0, BIG.length - 100);
  await assert.rejects(pass(bad, 65536, { listing: false, compress: { level: 3, workers: 2 } }), {
    code: 'NAR_INVALID',
  });
});

test('a reader that stops holds a compressing pass, and a writer nothing holds', async (t) => {
  // Incompressible: every slab comes out as large as it went in. The thread stops once 2 MiB
  // wait unread, so the writer is held too and the pass cannot finish.
  const nar = narOf({ type: 'regular', contents: randomBytes(40 * 1024 * 1024) });
  const { pass: p } = createNarPass({ listing: false, compress: { level: 1, workers: 0 } });
  t.after(() => p.destroy());
  let finishedWriting = false;
  p.on('finish', () => (finishedWriting = true));
  const written = pipeline(chunked(nar, 1 << 20), p);
  written.catch(() => undefined);
  const pause = () => new Promise((resolve) => setTimeout(resolve, 100));
  for (let i = 0; i < 600 && p.readableLength === 0; i++) await pause();
  let last = -1;
  for (let same = 0, i = 0; same < 6 && i < 300; i++) {
    await pause();
    same = p.readableLength === last ? same + 1 : 0;
    last = p.readableLength;
  }
  assert.ok(last > 0 && last < 16 * 1024 * 1024, `${last} bytes piled up unread`);
  assert.equal(finishedWriting, false);
  // Reading delivers everything, in order.
  const out: Buffer[] = [];
  await Promise.all([
    written,
    pipeline(p, new Writable({ write: (chunk: Buffer, _e, cb) => (out.push(chunk), cb()) })),
  ]);
  assert.ok(zstdDecompress(Buffer.concat(out)).equals(nar));
});

test('a destroyed pass rejects its result, and the threads go on serving others', async () => {
  for (const c of ['zstd', 'xz', 'gzip'] as const) {
    const { input, pass: p } = createNarPass({ listing: true, decompress: c });
    input.write(pack(c, BIG).subarray(0, 200_000));
    input.destroy(new Error('client went away'));
    await assert.rejects(p.result(), /client went away/);
    await assert.rejects(finished(input), /client went away/);
  }
  const small = narOf(TREES[1]![1]);
  assert.equal((await pass(small, 10, { listing: true })).narSize, small.length);
});

test('the SHA-256 sink hashes and counts what is written to it', async () => {
  const data = randomBytes(5 * 1024 * 1024 + 17);
  for (const size of [data.length, 1 << 20, 12_345]) {
    const h = new Sha256Sink();
    await pipeline(chunked(data, size), h);
    const { sha256, bytes } = await h.result();
    assert.deepEqual(Buffer.from(sha256), createHash('sha256').update(data).digest());
    assert.equal(bytes, data.length);
  }
  const empty = new Sha256Sink();
  empty.end();
  assert.deepEqual(Buffer.from((await empty.result()).sha256), createHash('sha256').digest());
  assert.equal((await empty.result()).bytes, 0);
});

test('the event loop keeps turning while a thread decodes and validates a NAR; on the loop it does not', async () => {
  // 32 MiB in 64 KiB chunks: on the loop, zstd decodes and the validator parses and hashes each
  // chunk synchronously as it is handed over (microtasks, no turns), so the loop hardly turns; on
  // the thread, the loop must wait for the thread's answer at least every 4 MiB (4 slabs at a
  // thread at once), and turns all the while the thread decodes. Counts, not milliseconds: see
  // test/helpers/loop-turns.ts.
  const nar = narOf({ type: 'regular', contents: Buffer.from(randomBytes(24 * 1024 * 1024).toString('base64')) });
  for (const c of ['none', 'zstd'] as const) {
    const file = pack(c, nar);
    const inline = await loopTurnsDuring(async () => {
      const parser = parserSink();
      await pipeline(chunked(file, 65536), createDecompressor(c), parser);
      return parser.narHash();
    });
    const off = await loopTurnsDuring(() => pass(file, 65536, { listing: true, decompress: c }));
    assert.equal(off.value.narHash, inline.value, c);
    assert.ok(inline.turns <= 2, `${c}: the loop turned ${inline.turns} times around the work on the loop`);
    // Hashing a raw NAR is quick work, which a thread may finish as fast as the slabs come.
    const bound = c === 'none' ? nar.length / (4 * 1024 * 1024) : 200;
    assert.ok(off.turns >= bound, `${c}: the loop turned only ${off.turns} times while the thread worked`);
  }
});
