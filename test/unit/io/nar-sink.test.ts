import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { NarhubError } from '../../../src/errors.js';
import { createNarValidator } from '../../../src/io/nar-sink.js';
import { formatListing } from '../../../src/nix/nar/listing.js';
import { NarParser } from '../../../src/nix/nar/nar-parser.js';
import { narFromTree } from '../../../src/nix/nar/nar-writer.js';

const NAR = Buffer.concat([
  ...narFromTree({
    type: 'directory',
    entries: {
      big: { type: 'regular', contents: randomBytes(300_000) },
      run: { type: 'regular', contents: Buffer.from('#!/bin/sh\n'), executable: true },
      to: { type: 'symlink', target: 'run' },
    },
  }),
]);

function chunks(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

describe('createNarValidator', () => {
  it('validates a streamed NAR and exposes hash, size and listing after finish', async () => {
    const expected = new NarParser();
    expected.update(NAR);
    const want = expected.finish();

    const validator = createNarValidator();
    assert.throws(() => validator.result(), /before the stream finished/);
    await pipeline(Readable.from(chunks(NAR, 1000), { objectMode: false }), validator);
    const got = validator.result();
    assert.equal(got.narHash, want.narHash);
    assert.equal(got.narSize, NAR.length);
    assert.equal(formatListing(got.listing!), formatListing(want.listing!));
  });

  it('can skip the listing', async () => {
    const validator = createNarValidator({ listing: false });
    await pipeline(Readable.from([NAR], { objectMode: false }), validator);
    assert.equal(validator.result().listing, undefined);
  });

  it('errors the stream at the first invalid chunk and stops the source', async () => {
    const bad = Buffer.from(NAR);
    bad[22] = 0xff; // in the padding of "nix-archive-1"
    let pulled = 0;
    async function* source(): AsyncGenerator<Buffer> {
      for (const c of chunks(bad, 64)) {
        pulled++;
        yield c;
      }
    }
    await assert.rejects(
      pipeline(Readable.from(source(), { objectMode: false }), createNarValidator()),
      (err: unknown) => {
        assert.ok(err instanceof NarhubError);
        assert.equal(err.code, 'NAR_INVALID');
        assert.equal(err.message, 'non-zero padding at byte 22');
        return true;
      },
    );
    assert.ok(pulled < 100, `pulled ${pulled} of ${Math.ceil(bad.length / 64)} chunks`);
  });

  it('rejects a truncated NAR when the input ends', async () => {
    const validator = createNarValidator();
    await assert.rejects(pipeline(Readable.from([NAR.subarray(0, NAR.length - 1)], { objectMode: false }), validator), {
      code: 'NAR_INVALID',
      message: `unexpected end of archive at byte ${NAR.length - 1}`,
    });
    assert.throws(() => validator.result());
  });
});
