// The zstd compressor that runs on a worker thread: same bytes out as zstd in, the output's
// hash and length computed there, and an event loop that keeps turning however fast the input.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { decompress } from 'zstd-napi';
import { createZstdOffThread } from '../../../src/io/zstd-off-thread.js';

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

test('the event loop keeps turning while input arrives faster than zstd compresses', async () => {
  // In-process multi-threaded zstd blocks the loop for nearly the whole run here (a 1 ms timer
  // never fires); off the event loop, the loop only copies input into slabs.
  const chunk = Buffer.from(randomBytes(48 * 1024).toString('base64'));
  const z = createZstdOffThread({ level: 3, workers: 2 });
  z.resume();
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const started = performance.now();
  for (let i = 0; i < 1600; i++) {
    // Distinct content, so zstd has real work (100 MiB in all).
    chunk.writeUInt32LE(i, 0);
    if (!z.write(Buffer.from(chunk))) await new Promise((resolve) => z.once('drain', resolve));
  }
  z.end();
  await finished(z);
  clearInterval(timer);
  const ms = performance.now() - started;
  assert.ok(ticks >= 10 && ticks >= ms / 50, `a 1 ms timer fired ${ticks} times in ${ms.toFixed(0)} ms`);
});
