import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { fanOut } from '../../../src/io/fan-out.js';
import { createNarPass } from '../../../src/io/nar-pass.js';
import { NarParser } from '../../../src/nix/nar/nar-parser.js';
import { narFromTree } from '../../../src/nix/nar/nar-writer.js';

interface Target {
  stream: Writable;
  chunks: Buffer[];
  bytes: () => number;
  finished: () => boolean;
}

/** A target whose writes take `delayMs` each (0: synchronous). */
function target(opts: { delayMs?: number; highWaterMark?: number; finalDelayMs?: number } = {}): Target {
  const chunks: Buffer[] = [];
  let bytes = 0;
  let finished = false;
  const stream = new Writable({
    highWaterMark: opts.highWaterMark ?? 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      bytes += chunk.length;
      if (opts.delayMs) setTimeout(cb, opts.delayMs);
      else cb();
    },
    final(cb) {
      setTimeout(() => {
        finished = true;
        cb();
      }, opts.finalDelayMs ?? 0);
    },
  });
  return { stream, chunks, bytes: () => bytes, finished: () => finished };
}

/** A sink that sha256-hashes and counts what it receives (as the upload's FileHash/FileSize). */
function hashCounter(): { stream: Writable; bytes: () => number; digest: () => Buffer } {
  const hash = createHash('sha256');
  let bytes = 0;
  let digest: Buffer | undefined;
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      cb();
    },
    final(cb) {
      digest = hash.digest();
      cb();
    },
  });
  return {
    stream,
    bytes: () => bytes,
    digest: () => {
      assert.ok(digest, 'the hash counter has not finished');
      return digest;
    },
  };
}

function source(count: number, size: number, onPull?: (n: number) => void): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    for (let i = 0; i < count; i++) {
      onPull?.(i + 1);
      yield Buffer.alloc(size, i & 0xff);
    }
  }
  return Readable.from(gen(), { objectMode: false });
}

describe('fanOut', () => {
  it('writes every chunk, in order and uncopied, to every target, then ends them all', async () => {
    const a = target();
    const b = target({ finalDelayMs: 20 });
    await pipeline(source(50, 1000), fanOut(a.stream, b.stream));
    // The fan-out finishes only after every target has finished (b's final is slow).
    assert.ok(a.finished() && b.finished());
    assert.equal(a.bytes(), 50_000);
    assert.equal(b.bytes(), 50_000);
    a.chunks.forEach((chunk, i) => {
      assert.equal(chunk, b.chunks[i], 'the same buffer goes to both targets');
      assert.equal(chunk[0], i & 0xff);
    });
  });

  it('is paced by the slowest target (backpressure from all of them)', async () => {
    const fast = target();
    const slow = target({ delayMs: 2, highWaterMark: 4096 });
    let pulled = 0;
    let maxLead = 0;
    let maxPulledAhead = 0;
    const timer = setInterval(() => {
      maxLead = Math.max(maxLead, fast.bytes() - slow.bytes());
      maxPulledAhead = Math.max(maxPulledAhead, pulled * 1024 - slow.bytes());
    }, 1);
    await pipeline(
      source(300, 1024, (n) => (pulled = n)),
      fanOut(fast.stream, slow.stream),
    );
    clearInterval(timer);
    assert.equal(slow.bytes(), 300 * 1024);
    // The fast target may only be ahead by what the slow one has buffered (its highWaterMark).
    assert.ok(maxLead <= 4096 + 1024, `fast target ran ${maxLead} bytes ahead`);
    // And the source is not drained into memory: only a few buffers' worth is in flight.
    assert.ok(maxPulledAhead <= 64 * 1024, `source was read ${maxPulledAhead} bytes ahead`);
  });

  it('leaves finished targets’ unread data alone (no teardown after a normal finish)', async () => {
    const pt = new PassThrough({ highWaterMark: 1 << 20 });
    await pipeline(source(10, 1000), fanOut(pt));
    await sleep(10);
    assert.equal(pt.destroyed, false);
    const got: Buffer[] = [];
    for await (const chunk of pt) got.push(chunk as Buffer);
    assert.equal(Buffer.concat(got).length, 10_000);
  });

  it('fails and destroys the other targets when one target errors', async () => {
    const ok = new PassThrough();
    ok.resume();
    const failing = new Writable({
      write(_chunk, _enc, cb) {
        cb(new Error('disk full'));
      },
    });
    await assert.rejects(pipeline(source(10, 100), fanOut(ok, failing)), /disk full/);
    assert.equal(ok.destroyed, true);
  });

  it('destroys every target when the source fails', async () => {
    const a = new PassThrough();
    const b = target({ delayMs: 1 });
    a.resume();
    const errored = once(a, 'error');
    async function* broken(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(10);
      throw new Error('client went away');
    }
    await assert.rejects(
      pipeline(Readable.from(broken(), { objectMode: false }), fanOut(a, b.stream)),
      /client went away/,
    );
    assert.equal(a.destroyed, true);
    assert.equal(b.stream.destroyed, true);
    assert.match(String((await errored)[0]), /client went away/);
  });

  it('does not hang when a target is closed early without an error', async () => {
    const stuck = new Writable({
      highWaterMark: 1,
      write() {
        // Never calls back: the write never drains.
      },
    });
    const other = target();
    setTimeout(() => stuck.destroy(), 20);
    await assert.rejects(pipeline(source(100, 100), fanOut(stuck, other.stream)), {
      code: 'ERR_STREAM_PREMATURE_CLOSE',
    });
  });

  it('with no targets is a plain sink', async () => {
    await pipeline(source(3, 10), fanOut());
  });

  it('stores the raw upload and decompresses + validates it in the same pass', async () => {
    const nar = Buffer.concat([...narFromTree({ type: 'regular', contents: randomBytes(500_000) })]);
    const upload = execFileSync('xz', ['-c'], { input: nar, maxBuffer: 64 << 20 });
    const expected = new NarParser({ listing: false });
    expected.update(nar);

    const stored = target({ delayMs: 1, highWaterMark: 8192 });
    const fileCounter = hashCounter();
    const { input, pass } = createNarPass({ listing: false, decompress: 'xz' });
    const chunks: Buffer[] = [];
    for (let i = 0; i < upload.length; i += 4096) chunks.push(upload.subarray(i, i + 4096));
    const [, validated] = await Promise.all([
      pipeline(Readable.from(chunks, { objectMode: false }), fanOut(stored.stream, input, fileCounter.stream)),
      pass.result(),
    ]);

    assert.ok(Buffer.concat(stored.chunks).equals(upload));
    assert.equal(fileCounter.bytes(), upload.length);
    assert.deepEqual(fileCounter.digest(), createHash('sha256').update(upload).digest());
    assert.equal(validated.narHash, expected.finish().narHash);
    assert.equal(validated.narSize, nar.length);
  });

  it('a NAR that fails validation fails the upload pass too', async () => {
    const bad = Buffer.concat([...narFromTree({ type: 'regular', contents: randomBytes(100_000) })]);
    bad[22] = 1; // padding of the magic: the validator fails on the first chunk
    const stored = new PassThrough();
    stored.resume();
    const { input, pass } = createNarPass({ listing: false });
    const validated = pass.result();
    const chunks: Buffer[] = [];
    for (let i = 0; i < bad.length; i += 4096) chunks.push(bad.subarray(i, i + 4096));
    const received = pipeline(Readable.from(chunks, { objectMode: false }), fanOut(stored, input));
    const [r, v] = await Promise.allSettled([received, validated]);
    assert.equal(v.status, 'rejected');
    assert.match(String((v as PromiseRejectedResult).reason), /non-zero padding at byte 22/);
    assert.equal(r.status, 'rejected');
    assert.equal(stored.destroyed, true);
  });
});
