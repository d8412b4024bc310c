// The `decompress` codec: every compression narhub accepts, decoded on a codec thread.
import { createRequire } from 'node:module';
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip } from 'node:zlib';
import type { Decompression } from '../codec-thread/protocol.js';
import { XZ_MEMLIMIT } from './xz-memlimit.js';
import { Bzip2Decoder } from './bzip2-decoder.js';
import { type Codec, DECODE_CHUNK, type DecoderOutput, type Host } from './codec.js';
import { streamDecoder } from './stream-decoder.js';
import { zstdDecompress } from './zstd.js';

const require = createRequire(import.meta.url);

interface Lzma {
  createDecompressor(options: { memlimit: number; bufsize: number }): Transform;
}

/**
 * xz is fed in pieces this size: liblzma (through lzma-native) decodes all it is given at once,
 * queueing every output buffer whether or not anyone reads, so a piece bounds what one write can
 * pile up here. xz expands up to ~7,000 times (zeros): a 64 KiB piece could queue ~440 MB, and a
 * 160 KB .nar.xz of 1 GiB of zeros took the process to 1 GB RSS; 1 KiB queues at most ~7 MB (the
 * same file: 150 MB peak, measured through createNarPass; an ordinary 33 MB .nar.xz decoded in
 * about the same time either way).
 * zlib waits for its reader: whole slabs.
 */
const XZ_PIECE = 1024;

/** Buffers input (a copy) and decodes one block per step. */
function bzip2Decompress(output: DecoderOutput): Codec {
  const decoder = new Bzip2Decoder();
  return {
    write: (input) => decoder.write(input),
    end: () => decoder.end(),
    step: () => decoder.step((chunk) => output.take(chunk)),
  };
}

/**
 * The decoders of io/compression.ts's `createDecompressor`, with the same options, here; output
 * is one unit's worth: a zstd step, a bzip2 block, what zlib or liblzma made of a piece.
 */
export function decompress(host: Host, compression: Decompression): Codec {
  const { emit, wake, full } = host;
  // A copy (Uint8Array's slice: a Buffer's is a view), so no decoder's buffer is taken along.
  const output: DecoderOutput = { take: (chunk) => emit(Uint8Array.prototype.slice.call(chunk)), full };
  switch (compression) {
    case 'zstd':
      return zstdDecompress(emit, host.spare);
    case 'bzip2':
      // Each block's output is in buffers of its own: they can go as they are.
      return bzip2Decompress({ take: emit, full });
    case 'gzip':
      // Concatenated members, as gzip(1) does.
      return streamDecoder(output, wake, createGunzip({ chunkSize: DECODE_CHUNK }), Infinity);
    case 'br':
      return streamDecoder(output, wake, createBrotliDecompress({ chunkSize: DECODE_CHUNK }), Infinity);
    case 'xz': {
      const lzma = require('lzma-native') as Lzma;
      return streamDecoder(
        output,
        wake,
        lzma.createDecompressor({ memlimit: XZ_MEMLIMIT, bufsize: DECODE_CHUNK }),
        XZ_PIECE,
      );
    }
  }
}
