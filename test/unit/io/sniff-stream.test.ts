import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { brotliCompressSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { NarhubError } from '../../../src/errors.js';
import type { Compression } from '../../../src/io/compression.js';
import { createNarValidator } from '../../../src/io/nar-sink.js';
import { sniffAndDecompress } from '../../../src/io/sniff-stream.js';
import { NarParser } from '../../../src/nix/nar/nar-parser.js';
import { narFromTree } from '../../../src/nix/nar/nar-writer.js';

const NAR = Buffer.concat([
  ...narFromTree({
    type: 'directory',
    entries: {
      bin: {
        type: 'directory',
        entries: { tool: { type: 'regular', contents: randomBytes(150_000), executable: true } },
      },
      doc: { type: 'regular', contents: Buffer.from('documentation\n'.repeat(20_000)) },
      lib: { type: 'symlink', target: 'bin' },
    },
  }),
]);
const NAR_HASH = (() => {
  const p = new NarParser({ listing: false });
  p.update(NAR);
  return p.finish().narHash;
})();

const TOOLS: Record<Exclude<Compression, 'none' | 'br'>, string[]> = {
  xz: ['xz', '-c'],
  bzip2: ['bzip2', '-c'],
  gzip: ['gzip', '-c'],
  zstd: ['zstd', '-c', '-q'],
};

function compress(c: Compression, data: Buffer): Buffer {
  if (c === 'none') return data;
  if (c === 'br') return brotliCompressSync(data);
  const [cmd, ...args] = TOOLS[c];
  return execFileSync(cmd!, args, { input: data, maxBuffer: 64 << 20 });
}

/** Awkward chunking: single bytes first (the head arrives in pieces), then random sizes. */
function awkward(data: Buffer): Readable {
  const chunks: Buffer[] = [];
  let i = 0;
  for (; i < Math.min(20, data.length); i++) chunks.push(data.subarray(i, i + 1));
  while (i < data.length) {
    const n = 1 + Math.floor(Math.random() * 20_000);
    chunks.push(data.subarray(i, i + n));
    i += n;
  }
  return Readable.from(chunks, { objectMode: false });
}

async function validate(stream: Readable): Promise<string> {
  const validator = createNarValidator({ listing: false });
  await pipeline(stream, validator);
  return validator.result().narHash;
}

describe('sniffAndDecompress', () => {
  const cases: [Compression, string | undefined][] = [
    ['none', undefined],
    ['xz', undefined],
    ['bzip2', undefined],
    ['gzip', undefined],
    ['zstd', undefined],
    ['br', '.br'],
    ['br', 'br'],
  ];
  for (const [c, hint] of cases) {
    it(`${c}${hint ? ` (hint ${hint})` : ''}: detects, decompresses and validates to the right NarHash`, async () => {
      const { compression, stream } = await sniffAndDecompress(awkward(compress(c, NAR)), hint);
      assert.equal(compression, c);
      assert.equal(await validate(stream), NAR_HASH);
    });
  }

  it('zstd with a leading skippable frame, and several frames', async () => {
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 5, 0, 0, 0]), Buffer.from('hello')]);
    const half = NAR.length >> 1;
    const body = Buffer.concat([
      skippable,
      compress('zstd', NAR.subarray(0, half)),
      compress('zstd', NAR.subarray(half)),
    ]);
    const { compression, stream } = await sniffAndDecompress(awkward(body));
    assert.equal(compression, 'zstd');
    assert.equal(await validate(stream), NAR_HASH);
  });

  it('unknown bodies: COMPRESSION_UNSUPPORTED, and the source is left alone', async () => {
    for (const body of [
      Buffer.alloc(0),
      Buffer.from('abc'),
      Buffer.from('<html><body>502 Bad Gateway</body></html>'),
    ]) {
      const source = awkward(body);
      await assert.rejects(sniffAndDecompress(source), (err: unknown) => {
        assert.ok(err instanceof NarhubError);
        assert.equal(err.code, 'COMPRESSION_UNSUPPORTED');
        assert.equal(err.message, 'body is neither a NAR nor xz, zstd, bzip2, gzip or brotli');
        return true;
      });
    }
    // An open connection stays usable: the caller can still drain it (or destroy it) itself.
    const open = new PassThrough();
    open.write(Buffer.from('GET / HTTP/1.1\r\nHost: example\r\n'));
    await assert.rejects(sniffAndDecompress(open), { code: 'COMPRESSION_UNSUPPORTED' });
    assert.equal(open.destroyed, false);
    open.resume();
    open.end(Buffer.from('more'));
    await new Promise((resolve) => open.once('end', resolve));
  });

  it('brotli without a hint is not guessed', async () => {
    await assert.rejects(sniffAndDecompress(awkward(compress('br', NAR))), { code: 'COMPRESSION_UNSUPPORTED' });
  });

  it('tiny bodies: a NAR prefix still goes to the validator, which reports the truncation', async () => {
    const { compression, stream } = await sniffAndDecompress(awkward(NAR.subarray(0, 10)));
    assert.equal(compression, 'none');
    await assert.rejects(validate(stream), { code: 'NAR_INVALID', message: 'unexpected end of archive at byte 10' });
  });

  it('a body that is exactly the head', async () => {
    const { stream } = await sniffAndDecompress(Readable.from([NAR.subarray(0, 16)], { objectMode: false }));
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c as Buffer);
    assert.ok(Buffer.concat(parts).equals(NAR.subarray(0, 16)));
  });

  it('source errors after the head surface on the returned stream', async () => {
    for (const c of ['none', 'zstd'] as const) {
      const packed = compress(c, NAR);
      async function* failing(): AsyncGenerator<Buffer> {
        yield packed.subarray(0, 1000);
        throw new Error('connection reset');
      }
      const { stream } = await sniffAndDecompress(Readable.from(failing(), { objectMode: false }));
      await assert.rejects(validate(stream), /connection reset/);
    }
  });

  it('corrupt compressed data errors the returned stream', async () => {
    const packed = compress('xz', NAR);
    const corrupt = Buffer.from(packed);
    for (let i = 100; i < 200; i++) corrupt[i] = corrupt[i]! ^ 0xff;
    const { stream } = await sniffAndDecompress(awkward(corrupt));
    await assert.rejects(validate(stream));
  });

  it('destroying the returned stream destroys the source', async () => {
    for (const c of ['none', 'gzip'] as const) {
      const source = new PassThrough();
      source.write(compress(c, NAR).subarray(0, 5000));
      const { stream } = await sniffAndDecompress(source);
      const closed = new Promise((resolve) => source.once('close', resolve));
      stream.destroy();
      await closed;
      assert.equal(source.destroyed, true);
    }
  });

  it('does not read the whole body up front (backpressure)', async () => {
    let pulled = 0;
    async function* big(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 1000; i++) {
        pulled++;
        yield i === 0 ? NAR.subarray(0, 64 * 1024) : Buffer.alloc(64 * 1024);
      }
    }
    const { stream } = await sniffAndDecompress(Readable.from(big(), { objectMode: false }));
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(pulled < 10, `pulled ${pulled} chunks with no reader`);
    stream.destroy();
  });
});
