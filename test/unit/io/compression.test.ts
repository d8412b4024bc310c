import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import {
  COMPRESSION_EXTENSION,
  compressionOfEncoding,
  compressionsWithExtension,
  createDecompressor,
  decompressSmall,
  isCompression,
  sniffCompression,
  zstdCompressSmall,
  type Compression,
} from '../../../src/io/compression.js';
import { narFromTree } from '../../../src/nix/nar/nar-writer.js';

const NAR = Buffer.concat([
  ...narFromTree({
    type: 'directory',
    entries: {
      // Compressible and incompressible parts.
      text: { type: 'regular', contents: Buffer.from('hello nix\n'.repeat(50_000)) },
      noise: { type: 'regular', contents: randomBytes(200_000) },
    },
  }),
]);

/** Compresses with the real command-line tool (brotli's CLI may be missing: zlib then). */
function compressWithTool(c: Compression, data: Buffer): Buffer {
  switch (c) {
    case 'none':
      return data;
    case 'xz':
      return execFileSync('xz', ['-c', '-T1'], { input: data, maxBuffer: 64 << 20 });
    case 'bzip2':
      return execFileSync('bzip2', ['-c'], { input: data, maxBuffer: 64 << 20 });
    case 'gzip':
      return execFileSync('gzip', ['-c'], { input: data, maxBuffer: 64 << 20 });
    case 'zstd':
      return execFileSync('zstd', ['-c', '-q'], { input: data, maxBuffer: 64 << 20 });
    case 'br':
      return brotliCompressSync(data);
  }
}

async function run(stream: Transform, input: Buffer, chunkSize = 4096): Promise<Buffer> {
  const parts: Buffer[] = [];
  const chunks: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunkSize) chunks.push(input.subarray(i, i + chunkSize));
  await pipeline(
    Readable.from(chunks, { objectMode: false }),
    stream,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        parts.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(parts);
}

const ALL: Compression[] = ['none', 'xz', 'bzip2', 'gzip', 'zstd', 'br'];

describe('sniffCompression', () => {
  it('recognises what the real tools produce', () => {
    for (const c of ALL) {
      const head = compressWithTool(c, NAR).subarray(0, 16);
      assert.equal(sniffCompression(head, c === 'br' ? '.br' : undefined), c, c);
    }
  });

  it('recognises the magic bytes', () => {
    const b = (...bytes: number[]): Uint8Array => Uint8Array.from(bytes);
    assert.equal(sniffCompression(NAR.subarray(0, 16)), 'none');
    assert.equal(sniffCompression(NAR.subarray(0, 8)), 'none');
    assert.equal(sniffCompression(b(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0)), 'xz');
    assert.equal(sniffCompression(b(0x28, 0xb5, 0x2f, 0xfd, 0x24, 0, 0, 0)), 'zstd');
    assert.equal(sniffCompression(b(0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0)), 'zstd'); // skippable frame
    assert.equal(sniffCompression(b(0x5f, 0x2a, 0x4d, 0x18, 4, 0, 0, 0)), 'zstd');
    assert.equal(sniffCompression(Buffer.from('BZh91AY&SY')), 'bzip2');
    assert.equal(sniffCompression(b(0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0)), 'gzip');
  });

  it('returns null for anything else', () => {
    for (const head of [
      Buffer.alloc(0),
      Buffer.from('<html>hello</html>'),
      Buffer.from('BZh0xxxx'), // block size must be 1-9
      Uint8Array.of(0x1f, 0x8b, 0x07, 0, 0, 0, 0, 0), // gzip method must be deflate
      Uint8Array.of(0x0d, 0, 0, 0, 0, 0, 0, 0, 0x6e, 0x69, 0x78, 0x2d, 0x61, 0x72, 0x63, 0x69), // "nix-arci"
      NAR.subarray(0, 7), // too short to tell
      Uint8Array.of(0x60, 0x2a, 0x4d, 0x18), // not a skippable-frame magic
    ]) {
      assert.equal(sniffCompression(head), null, Buffer.from(head).toString('hex'));
    }
  });

  it('believes a brotli hint, but not over a raw NAR', () => {
    const br = brotliCompressSync(NAR).subarray(0, 16);
    assert.equal(sniffCompression(br), null);
    for (const hint of ['br', '.br', 'abc.nar.br', 'BR']) assert.equal(sniffCompression(br, hint), 'br');
    for (const hint of ['brotli', '.xz', 'gzip', '']) assert.equal(sniffCompression(br, hint), null);
    assert.equal(sniffCompression(NAR.subarray(0, 16), 'br'), 'none');
  });
});

describe('compression names', () => {
  it("gives gzip and none no extension, and the others Nix's own", () => {
    assert.deepEqual(COMPRESSION_EXTENSION, { none: '', xz: '.xz', bzip2: '.bz2', gzip: '', zstd: '.zst', br: '.br' });
    assert.deepEqual(compressionsWithExtension(''), ['none', 'gzip']);
    assert.deepEqual(compressionsWithExtension('.zst'), ['zstd']);
    assert.deepEqual(compressionsWithExtension('.lz4'), []);
  });

  it('knows the narinfo Compression names narhub takes, and no others', () => {
    for (const c of ['none', 'xz', 'bzip2', 'gzip', 'zstd', 'br']) assert.ok(isCompression(c), c);
    for (const c of ['lz4', 'lzip', 'XZ', '', 'toString']) assert.ok(!isCompression(c), c);
  });

  it('reads a Content-Encoding as a compression: none when absent or identity, an error when unknown', () => {
    assert.equal(compressionOfEncoding(undefined), 'none');
    assert.equal(compressionOfEncoding('identity'), 'none');
    assert.equal(compressionOfEncoding('br'), 'br');
    assert.equal(compressionOfEncoding('gzip'), 'gzip');
    for (const bad of ['deflate', 'none', 'gzip, br', 'x'.repeat(500)])
      assert.throws(() => compressionOfEncoding(bad), {
        code: 'BAD_REQUEST',
        message: /^unsupported Content-Encoding/,
      });
  });
});

describe('createDecompressor', () => {
  for (const c of ALL) {
    it(`decompresses ${c} from the real tool`, async () => {
      assert.ok((await run(createDecompressor(c), compressWithTool(c, NAR))).equals(NAR));
    });
  }

  it('handles concatenated gzip members and zstd frames', async () => {
    const half = NAR.length >> 1;
    const gz = Buffer.concat([gzipSync(NAR.subarray(0, half)), gzipSync(NAR.subarray(half))]);
    assert.ok((await run(createDecompressor('gzip'), gz)).equals(NAR));
    const zst = Buffer.concat([
      compressWithTool('zstd', NAR.subarray(0, half)),
      compressWithTool('zstd', NAR.subarray(half)),
    ]);
    assert.ok((await run(createDecompressor('zstd'), zst)).equals(NAR));
  });

  it('decodes byte-sized input chunks', async () => {
    const small = NAR.subarray(0, 3000);
    for (const c of ALL) {
      assert.ok((await run(createDecompressor(c), compressWithTool(c, small), 1)).equals(small), c);
    }
  });

  for (const c of ALL.filter((x) => x !== 'none')) {
    it(`errors on truncated and on corrupt ${c}`, async () => {
      const packed = compressWithTool(c, NAR);
      await assert.rejects(run(createDecompressor(c), packed.subarray(0, packed.length >> 1)));
      // Brotli has no checksum: damage inside a stored (incompressible) block goes unnoticed,
      // which is one reason the NAR itself is always validated and hashed after decompression.
      if (c === 'br') return;
      const corrupt = Buffer.from(packed);
      const from = packed.length >> 2;
      for (let i = from; i < from + 64; i++) corrupt[i] = corrupt[i]! ^ 0x55;
      await assert.rejects(run(createDecompressor(c), corrupt));
    });
  }
});

describe('zstdCompressSmall', () => {
  for (const level of [1, 3, 19]) {
    it(`level ${level} round-trips and the zstd tool can read it`, async () => {
      const packed = zstdCompressSmall(NAR, level);
      assert.equal(sniffCompression(packed.subarray(0, 16)), 'zstd');
      assert.ok(packed.length < NAR.length);
      assert.ok((await run(createDecompressor('zstd'), packed)).equals(NAR));
      assert.ok(execFileSync('zstd', ['-d', '-c', '-q'], { input: packed, maxBuffer: 64 << 20 }).equals(NAR));
    });
  }

  it('compresses a view into a larger buffer, not the whole buffer', async () => {
    const big = Buffer.concat([Buffer.from('before'), NAR, Buffer.from('after')]);
    const view = new Uint8Array(big.buffer, big.byteOffset + 6, NAR.length);
    assert.ok((await run(createDecompressor('zstd'), zstdCompressSmall(view, 3))).equals(NAR));
  });

  it('a higher level compresses better', () => {
    const text = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i % 977} of ${i % 13}\n`).join(''));
    const fast = zstdCompressSmall(text, 1);
    const best = zstdCompressSmall(text, 19);
    assert.ok(best.length < fast.length, `${best.length} < ${fast.length}`);
  });
});

describe('decompressSmall', () => {
  const MAX = 64 * 1024;
  const data = (n: number) => Buffer.from(randomBytes(n / 2).toString('hex'));

  it('decodes zstd, gzip and brotli up to exactly max bytes, and gives up (undefined) one byte past it', () => {
    for (const [name, compress] of [
      ['zstd', (b: Buffer) => zstdCompressSmall(b, 3)],
      ['gzip', gzipSync],
      ['br', brotliCompressSync],
    ] as const) {
      const exact = data(MAX);
      assert.ok(decompressSmall(compress(exact), name, MAX)?.equals(exact), `${name}: exactly max`);
      assert.equal(decompressSmall(compress(Buffer.concat([exact, Buffer.from('x')])), name, MAX), undefined, name);
    }
  });

  it('decodes a zstd stream that fills its 1 MiB output buffer exactly (the frame ends with the buffer)', () => {
    const mib = Buffer.alloc(1024 * 1024, 7);
    assert.ok(decompressSmall(zstdCompressSmall(mib, 3), 'zstd', 2 * mib.length)?.equals(mib));
  });

  it('decodes several zstd frames and a skippable frame as one stream, like the streaming decoder', () => {
    const [a, b] = [data(1000), data(3000)];
    const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
    const file = Buffer.concat([zstdCompressSmall(a, 3), skippable, zstdCompressSmall(b, 3)]);
    assert.ok(decompressSmall(file, 'zstd', MAX)?.equals(Buffer.concat([a, b])));
  });

  it('throws for a zstd stream cut inside its frame, and leaves xz and bzip2 to the streams', () => {
    const file = zstdCompressSmall(data(5000), 3);
    assert.throws(() => decompressSmall(file.subarray(0, file.length - 5), 'zstd', MAX), /ended in middle/);
    assert.equal(decompressSmall(file, 'xz', MAX), undefined);
    assert.equal(decompressSmall(file, 'bzip2', MAX), undefined);
  });
});
