import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { writevAll, type VectorWriter } from '../../../src/storage/writev-all.js';

/** A writer that takes at most `limit(call)` bytes per call, like write(2) near a full disk. */
function partialWriter(limit: (call: number) => number): VectorWriter & { written: Buffer[]; calls: number } {
  const w = {
    written: [] as Buffer[],
    calls: 0,
    writev: async (buffers: readonly NodeJS.ArrayBufferView[]) => {
      let room = limit(w.calls++);
      let bytesWritten = 0;
      for (const b of buffers) {
        if (room === 0) break;
        const bytes = Buffer.from(b.buffer, b.byteOffset, Math.min(b.byteLength, room));
        w.written.push(Buffer.from(bytes));
        room -= bytes.length;
        bytesWritten += bytes.length;
      }
      return { bytesWritten, buffers: buffers as NodeJS.ArrayBufferView[] };
    },
  };
  return w as VectorWriter & { written: Buffer[]; calls: number };
}

describe('writevAll', () => {
  it('writes every byte, in order, however little each call takes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }),
        async (buffers, limits) => {
          const w = partialWriter((call) => limits[call % limits.length]!);
          const total = await writevAll(w, buffers);
          const expected = Buffer.concat(buffers);
          assert.equal(total, expected.length);
          assert.deepEqual(Buffer.concat(w.written), expected);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('makes one call when the writer takes everything, none for empty buffers', async () => {
    const w = partialWriter(() => Infinity);
    assert.equal(await writevAll(w, [Buffer.from('ab'), new Uint8Array(0), Buffer.from('cde')]), 5);
    assert.equal(w.calls, 1);
    const idle = partialWriter(() => Infinity);
    assert.equal(await writevAll(idle, [new Uint8Array(0)]), 0);
    assert.equal(idle.calls, 0);
  });

  it('fails rather than spin when the writer takes nothing', async () => {
    await assert.rejects(
      writevAll(
        partialWriter(() => 0),
        [Buffer.from('x')],
      ),
      /wrote nothing/,
    );
  });
});
