import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { NarhubError } from '../../../src/errors.js';
import { createByteLimit } from '../../../src/io/byte-limit.js';

function counterSink(): { sink: Writable; received: () => number } {
  let n = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      cb();
    },
  });
  return { sink, received: () => n };
}

describe('ByteLimit', () => {
  it('lets exactly `max` bytes through', async () => {
    const { sink, received } = counterSink();
    await pipeline(
      Readable.from([Buffer.alloc(600), Buffer.alloc(400)], { objectMode: false }),
      createByteLimit(1000),
      sink,
    );
    assert.equal(received(), 1000);
  });

  it('fails with BODY_TOO_LARGE at the chunk that crosses the limit, without forwarding it', async () => {
    const { sink, received } = counterSink();
    await assert.rejects(
      pipeline(
        Readable.from([Buffer.alloc(600), Buffer.alloc(401)], { objectMode: false }),
        createByteLimit(1000),
        sink,
      ),
      (err: unknown) =>
        err instanceof NarhubError &&
        err.code === 'BODY_TOO_LARGE' &&
        err.message === 'body exceeds the limit of 1000 bytes',
    );
    assert.equal(received(), 600);
  });

  it('stops an endless body early', async () => {
    let produced = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      for (;;) {
        produced++;
        yield Buffer.alloc(1024);
      }
    }
    await assert.rejects(
      pipeline(Readable.from(endless(), { objectMode: false }), createByteLimit(10 * 1024), counterSink().sink),
      {
        code: 'BODY_TOO_LARGE',
      },
    );
    assert.ok(produced < 64, `read ${produced} chunks`);
  });

  it('a limit of 0 allows only an empty body', async () => {
    await pipeline(Readable.from([], { objectMode: false }), createByteLimit(0), counterSink().sink);
    await assert.rejects(
      pipeline(Readable.from([Buffer.alloc(1)], { objectMode: false }), createByteLimit(0), counterSink().sink),
      {
        code: 'BODY_TOO_LARGE',
      },
    );
  });
});
