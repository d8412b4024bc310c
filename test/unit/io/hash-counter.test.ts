import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { createHashCounter } from '../../../src/io/hash-counter.js';

function collector(): { sink: Writable; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  return { sink, chunks };
}

describe('HashCounter', () => {
  it('passes bytes through unchanged while hashing and counting them', async () => {
    const parts = [randomBytes(1), randomBytes(70_000), Buffer.alloc(0), randomBytes(333)];
    const whole = Buffer.concat(parts);
    const counter = createHashCounter();
    const { sink, chunks } = collector();
    await pipeline(Readable.from(parts, { objectMode: false }), counter, sink);
    assert.ok(Buffer.concat(chunks).equals(whole));
    assert.equal(counter.bytes, whole.length);
    assert.deepEqual(Buffer.from(counter.digest()), createHash('sha256').update(whole).digest());
  });

  it('hashes an empty stream', async () => {
    const counter = createHashCounter();
    await pipeline(Readable.from([], { objectMode: false }), counter, collector().sink);
    assert.equal(counter.bytes, 0);
    assert.equal(Buffer.from(counter.digest()).toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('has no digest before the stream finished', () => {
    const counter = createHashCounter();
    counter.write(Buffer.from('abc'));
    assert.throws(() => counter.digest(), /before the stream finished/);
    counter.destroy();
  });
});
