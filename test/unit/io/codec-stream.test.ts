// Codecs on a worker thread (io/codec-thread/codec-stream.ts), bzip2 decompression in particular:
// the same bytes as bzip2(1) would give, corrupt input as a stream error, backpressure from the
// reader back to the writer, destroy that frees the thread, and an event loop that keeps turning.
// zstd compression as production runs it (a NAR pass with `compress`, io/nar-pass.ts):
// streams kept apart, destroy that frees the thread, and an event loop that keeps turning.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import zstd, { decompress as zstdDecompress } from 'zstd-napi';
import { createDecompressor } from '../../../src/io/compression.js';
import { CodecStream } from '../../../src/io/codec-thread/codec-stream.js';
import { NarPass } from '../../../src/io/nar-pass.js';
import { narFromTree } from '../../../src/nix/nar/nar-writer.js';
import { loopTurnsDuring } from '../../helpers/loop-turns.js';

function bzip2(data: Buffer, level = 9): Buffer {
  return execFileSync('bzip2', ['-c', `-${level}`], { input: data, maxBuffer: 1 << 30 });
}

/** Base64 of random bytes: compressible, never repetitive. */
function text(bytes: number): Buffer {
  return Buffer.from(randomBytes((bytes / 4) * 3).toString('base64'));
}

const bunzip2 = () => new CodecStream({ codec: 'decompress', compression: 'bzip2' });

/** A NAR holding one file of `contents`. */
const narOf = (contents: Buffer): Buffer => Buffer.concat([...narFromTree({ type: 'regular', contents })]);

/** What production compresses with: a NAR pass that validates and zstd-compresses on a codec thread. */
const zstdNarPass = (workers: number) => new NarPass({ listing: false, compress: { level: 3, workers } });

/** Runs `input` through `stream` in chunks of `chunkSize`; the output, or what came before the error. */
async function run(stream: Transform, input: Buffer, chunkSize = 64 * 1024): Promise<{ out: Buffer; error?: Error }> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunkSize) chunks.push(input.subarray(i, i + chunkSize));
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
  });
  try {
    await pipeline(Readable.from(chunks), stream, sink);
    return { out: Buffer.concat(parts) };
  } catch (err) {
    return { out: Buffer.concat(parts), error: err as Error };
  }
}

/**
 * Waits for `probe()` to become positive, then until it has not changed for a while: the
 * stream has stopped (or, on a busy machine, is merely slow, which only ever makes the value
 * smaller than where it would stop).
 */
async function settled(probe: () => number): Promise<number> {
  const pause = () => new Promise((resolve) => setTimeout(resolve, 100));
  for (let i = 0; i < 600 && probe() === 0; i++) await pause();
  let last = probe();
  for (let same = 0, i = 0; same < 6 && i < 300; i++) {
    await pause();
    const now = probe();
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

const DATA = text(1_500_000);
const PACKED = bzip2(DATA);

test('bzip2: the bytes bzip2(1) packed, whatever the block size, streams or chunking', async () => {
  // 15 blocks of 100 kB, then 2 of 900 kB.
  for (const level of [1, 9]) {
    const s = bunzip2();
    const { out, error } = await run(s, bzip2(DATA, level));
    assert.equal(error, undefined);
    assert.ok(out.equals(DATA), `level ${level}`);
    assert.equal(s.bytes, DATA.length);
    assert.throws(() => s.digest(), /without hashOutput/);
  }
  // Concatenated streams (as pbzip2 writes them) decode one after the other.
  const half = DATA.length >> 1;
  const two = Buffer.concat([bzip2(DATA.subarray(0, half), 1), bzip2(DATA.subarray(half), 9)]);
  assert.ok((await run(bunzip2(), two, 1000)).out.equals(DATA));
  // The whole input in one write, and byte by byte.
  assert.ok((await run(bunzip2(), PACKED, PACKED.length)).out.equals(DATA));
  const small = DATA.subarray(0, 5000);
  assert.ok((await run(bunzip2(), bzip2(small), 1)).out.equals(small));
  // An empty stream is empty; an empty input too (the sniffer never passes one on).
  assert.equal((await run(bunzip2(), bzip2(Buffer.alloc(0)))).out.length, 0);
  assert.equal((await run(bunzip2(), Buffer.alloc(0))).out.length, 0);
});

test('bzip2: corrupt or truncated input fails the stream, after only verified output', async () => {
  const packed = bzip2(DATA, 1);
  const corrupt = (at: number) => {
    const copy = Buffer.from(packed);
    for (let i = at; i < at + 32; i++) copy[i] = copy[i]! ^ 0x55;
    return copy;
  };
  const cases: [string, Buffer][] = [
    ['cut in a block', packed.subarray(0, packed.length >> 1)],
    ['cut before the end-of-stream marker', packed.subarray(0, packed.length - 7)],
    ['only the header', packed.subarray(0, 4)],
    ['damaged in a block', corrupt(packed.length >> 1)],
    ['damaged at the start', corrupt(10)],
    ['garbage after the stream', Buffer.concat([packed, Buffer.from('garbage!garbage!')])],
    ['no bzip2 at all', Buffer.from('BZh9 is not enough to make this bzip2 data')],
  ];
  for (const [what, input] of cases) {
    const { out, error } = await run(bunzip2(), input);
    assert.match(String(error), /bzip2 decompression failed: /, what);
    // A block leaves the thread only once its CRC matched: what came out is the data's start.
    assert.ok(DATA.subarray(0, out.length).equals(out), `${what}: ${out.length} bytes out are not a prefix`);
  }
  // The truncated case still yields every complete block before the cut.
  assert.ok((await run(bunzip2(), packed.subarray(0, packed.length >> 1))).out.length >= 500_000);
  // Through createDecompressor, as the ingest sees it.
  assert.ok((await run(createDecompressor('bzip2'), corrupt(packed.length >> 1))).error instanceof Error);
});

test('bzip2: a reader that stops holds the decoder, however large the output', async (t) => {
  // 112 bytes that decode to 128 MiB of zeros, 46 MB per block: the thread stops once 2 MiB wait
  // unread, so what piles up is one block, not three, and the stream cannot finish.
  const bomb = execFileSync('bzip2', ['-c', '-9'], { input: Buffer.alloc(128 * 1024 * 1024), maxBuffer: 1 << 20 });
  const s = bunzip2();
  t.after(() => s.destroy()); // a stream in progress keeps the process alive
  let finishedWriting = false;
  s.on('finish', () => (finishedWriting = true));
  s.end(bomb);
  const buffered = await settled(() => s.readableLength);
  assert.ok(buffered > 0 && buffered < 64 * 1024 * 1024, `${buffered} bytes piled up unread`);
  assert.equal(finishedWriting, false);
  s.destroy();

  // Resuming delivers everything, in order.
  const data = text(6 * 1024 * 1024);
  const r = bunzip2();
  t.after(() => r.destroy());
  r.end(bzip2(data, 1));
  assert.ok((await settled(() => r.readableLength)) < 6 * 1024 * 1024);
  const parts: Buffer[] = [];
  for await (const chunk of r) parts.push(chunk as Buffer);
  assert.ok(Buffer.concat(parts).equals(data));
});

test('bzip2: a destroyed stream stops and the threads serve others, also after a failure', async (t) => {
  const s = bunzip2();
  t.after(() => s.destroy());
  s.write(bzip2(text(3 * 1024 * 1024), 1));
  await new Promise((resolve) => s.once('data', resolve));
  s.destroy(new Error('client went away'));
  await assert.rejects(finished(s), /client went away/);
  assert.match(String((await run(bunzip2(), Buffer.from('BZh9garbage'))).error), /bzip2 decompression failed/);
  assert.ok((await run(bunzip2(), PACKED)).out.equals(DATA));
});

test('bzip2 and zstd streams at once keep their bytes apart', async () => {
  // The zstd streams compress NARs (a NAR pass with compress): the input must be one.
  const inputs = Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? text(400_000) : narOf(text(400_000))));
  const results = await Promise.all(
    inputs.map((input, i) => (i % 2 === 0 ? run(bunzip2(), bzip2(input, 1), 10_000) : run(zstdNarPass(1), input))),
  );
  results.forEach(({ out, error }, i) => {
    assert.equal(error, undefined);
    assert.ok((i % 2 === 0 ? out : zstdDecompress(out)).equals(inputs[i]!), `stream ${i}`);
  });
});

// The decoder narhub used before: unbzip2-stream's own stream, on the event loop.
const unbzip2 = createRequire(import.meta.url)('unbzip2-stream') as () => {
  write(data: Buffer): boolean;
  end(): void;
  on(event: string, listener: (arg: never) => void): void;
};
class InlineBunzip2 extends Transform {
  private readonly inner = unbzip2();
  constructor() {
    super();
    this.inner.on('data', (data: Buffer) => this.push(data));
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.inner.write(chunk);
    callback();
  }
  override _flush(callback: TransformCallback): void {
    this.inner.end();
    callback();
  }
}

test('the event loop keeps turning while bzip2 decodes; with the decoder on the loop it does not', async () => {
  // The whole input in one write: the decoder on the loop decodes it in one synchronous call
  // (and the rest at the end), so the loop does not turn; off the loop, it turns until the
  // thread is done. Counts, not milliseconds: see test/helpers/loop-turns.ts.
  const inline = await loopTurnsDuring(() => run(new InlineBunzip2(), PACKED, PACKED.length));
  assert.ok(inline.value.out.equals(DATA));
  const off = await loopTurnsDuring(() => run(bunzip2(), PACKED, PACKED.length));
  assert.ok(off.value.out.equals(DATA));
  assert.ok(inline.turns <= 2, `the loop turned ${inline.turns} times around the synchronous decoder`);
  assert.ok(off.turns > 200, `the loop turned only ${off.turns} times while the thread decoded`);
});

test('zstd: a destroyed compressing stream stops, and the threads serve others', async () => {
  const nar = narOf(text(3 * 1024 * 1024));
  const z = zstdNarPass(2);
  z.write(nar);
  z.destroy(new Error('client went away'));
  await assert.rejects(finished(z), /client went away/);
  await assert.rejects(z.result(), /client went away/);
  assert.throws(() => z.digest(), /before the stream finished/);
  const small = narOf(Buffer.from('after'));
  const { out, error } = await run(zstdNarPass(2), small);
  assert.equal(error, undefined);
  assert.ok(zstdDecompress(out).equals(small));
});

test('the event loop keeps turning while zstd compresses on a thread; with zstd on the loop it does not', async () => {
  // 32 MiB in one write: zstd with worker threads of its own, called on the loop, compresses it
  // in one synchronous call (its threads work, the caller waits), so the loop does not turn; on
  // a codec thread, the loop only copies the input into slabs and then turns until the thread is
  // done. Counts, not milliseconds: see test/helpers/loop-turns.ts.
  const nar = narOf(text(32 * 1024 * 1024));
  const inline = await loopTurnsDuring(() =>
    run(new zstd.CompressStream({ compressionLevel: 3, nbWorkers: 2 }), nar, nar.length),
  );
  const off = await loopTurnsDuring(() => run(zstdNarPass(2), nar, nar.length));
  assert.equal(inline.value.error, undefined);
  assert.equal(off.value.error, undefined);
  assert.ok(zstdDecompress(inline.value.out).equals(nar));
  assert.ok(zstdDecompress(off.value.out).equals(nar));
  assert.ok(inline.turns <= 2, `the loop turned ${inline.turns} times around the compressor on the loop`);
  assert.ok(off.turns > 200, `the loop turned only ${off.turns} times while the thread compressed`);
});
