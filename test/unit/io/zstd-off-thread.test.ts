// The zstd compressor that runs on a worker thread: same bytes out as zstd in, the output's
// hash and length computed there, and an event loop that keeps turning while it compresses.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { decompress } from 'zstd-napi';
import { createCompressor } from '../../../src/io/compression.js';
import { createZstdOffThread } from '../../../src/io/zstd-off-thread.js';
import { loopTurnsDuring } from '../../helpers/loop-turns.js';

async function compressAll(input: Buffer[], opts = { level: 3, workers: 2 }) {
  const z = createZstdOffThread(opts);
  const out: Buffer[] = [];
  z.on('data', (d: Buffer) => out.push(d));
  await pipeline(Readable.from(input), z);
  await finished(z);
  return { z, out: Buffer.concat(out) };
}

test('compresses to a zstd stream that decompresses to the input, with its hash and length', async () => {
  for (const workers of [0, 2]) {
    const input = Array.from({ length: 40 }, (_, i) => Buffer.from(randomBytes(30_000 + i).toString('base64')));
    const { z, out } = await compressAll(input, { level: 3, workers });
    assert.ok(decompress(out).equals(Buffer.concat(input)));
    assert.equal(z.bytes, out.length);
    assert.deepEqual(Buffer.from(z.digest()), createHash('sha256').update(out).digest());
    assert.ok(out.length < Buffer.concat(input).length);
  }
  // Empty input is a valid (empty) frame.
  const { z, out } = await compressAll([]);
  assert.equal(decompress(out).length, 0);
  assert.equal(z.bytes, out.length);
});

test('several streams at once keep their bytes apart', async () => {
  const inputs = Array.from({ length: 5 }, (_, i) => Array.from({ length: 10 }, () => Buffer.from(`stream ${i} `.repeat(20_000))));
  const results = await Promise.all(inputs.map((input) => compressAll(input)));
  results.forEach(({ out }, i) => assert.ok(decompress(out).equals(Buffer.concat(inputs[i]!))));
});

test('a destroyed stream releases its thread and stops', async () => {
  const z = createZstdOffThread({ level: 3, workers: 2 });
  z.write(Buffer.alloc(3 << 20, 7));
  z.destroy(new Error('client went away'));
  await assert.rejects(finished(z), /client went away/);
  assert.throws(() => z.digest(), /before the stream finished/);
  // The thread still serves others.
  const { out } = await compressAll([Buffer.from('after')]);
  assert.equal(decompress(out).toString(), 'after');
});

test('the event loop keeps turning while zstd compresses; with zstd on the loop it does not', async () => {
  // 32 MiB in one write: in-process multi-threaded zstd compresses it in one synchronous call
  // (its threads work, the caller waits), so the loop does not turn; off the loop, the loop only
  // copies the input into slabs and then turns until the thread is done. Counts, not
  // milliseconds: see test/helpers/loop-turns.ts.
  const input = Buffer.from(randomBytes(24 * 1024 * 1024).toString('base64'));
  const opts = { level: 3, workers: 2 };
  const inline = await loopTurnsDuring(async () => {
    const out: Buffer[] = [];
    await pipeline(Readable.from([input]), createCompressor('zstd', opts), async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) out.push(chunk);
    });
    return { out: Buffer.concat(out) };
  });
  const off = await loopTurnsDuring(() => compressAll([input], opts));
  assert.ok(decompress(inline.value.out).equals(input));
  assert.ok(decompress(off.value.out).equals(input));
  assert.ok(inline.turns <= 2, `the loop turned ${inline.turns} times around the in-process compressor`);
  assert.ok(off.turns > 200, `the loop turned only ${off.turns} times while the thread compressed`);
});
