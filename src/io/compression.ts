import { PassThrough, Readable, type Transform } from 'node:stream';
import { brotliDecompressSync, createBrotliDecompress, createGunzip, gunzipSync } from 'node:zlib';
import zstd from 'zstd-napi';
import { NarhubError } from '../errors.js';
import { CodecStream } from './codec-thread/codec-stream.js';
import { zstdDecompressSmall } from './codecs/zstd.js';
import { readSmallBody } from './read-small-body.js';

/** The compressions narhub accepts (docs/protocol.md, Compression); Nix's others need libarchive or external tools. */
export const COMPRESSIONS = ['none', 'xz', 'bzip2', 'gzip', 'zstd', 'br'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

export function isCompression(name: string): name is Compression {
  return (COMPRESSIONS as readonly string[]).includes(name);
}

/** NAR URL extension Nix uses for each: gzip, like none, gets none. */
export const COMPRESSION_EXTENSION: Record<Compression, string> = {
  none: '',
  xz: '.xz',
  bzip2: '.bz2',
  gzip: '',
  zstd: '.zst',
  br: '.br',
};

/** What a NAR file whose name ends in `.nar<extension>` may hold: none for an extension narhub does not take. */
export function compressionsWithExtension(extension: string): Compression[] {
  return COMPRESSIONS.filter((c) => COMPRESSION_EXTENSION[c] === extension);
}

/**
 * The compression of a small file by its Content-Encoding (Nix's narinfo-, ls- and
 * log-compression send the compression's own name): none when absent or `identity`.
 */
export function compressionOfEncoding(encoding: string | undefined): Compression {
  if (encoding === undefined || encoding === '' || encoding === 'identity') return 'none';
  if (encoding === 'none' || !isCompression(encoding))
    throw new NarhubError('BAD_REQUEST', `unsupported Content-Encoding ${JSON.stringify(encoding.slice(0, 40))}`);
  return encoding;
}

/** The first 16 bytes of every NAR: str("nix-archive-1") starts with len 13 and "nix-arch". */
const NAR_MAGIC = Uint8Array.from([0x0d, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from('nix-arch')]);
const XZ_MAGIC = Uint8Array.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const ZSTD_MAGIC = Uint8Array.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * Identifies a body from its first bytes (at least 8; 16 to be sure of a raw NAR). Magic bytes
 * win; brotli has none, so `br` is only returned when the hint (an extension such as `.br`, a
 * file name, or the narinfo name `br`) says so and the body is not plainly a raw NAR.
 * Returns null when nothing matches.
 */
export function sniffCompression(head: Uint8Array, hint?: string): Compression | null {
  const h = hint?.toLowerCase();
  const hintsBrotli = h !== undefined && (h === 'br' || h.endsWith('.br'));
  // Any prefix of 8+ bytes of the NAR magic: a short truncated NAR is still "a NAR" and then
  // fails validation with a clearer message than "unsupported compression".
  if (head.length >= 8 && startsWith(NAR_MAGIC, head.subarray(0, 16))) return 'none';
  if (hintsBrotli) return 'br';
  if (startsWith(head, XZ_MAGIC)) return 'xz';
  if (startsWith(head, ZSTD_MAGIC)) return 'zstd';
  // zstd skippable frame (magic 0x184D2A50..5F, little-endian) may precede the first real frame.
  if (head.length >= 4 && (head[0]! & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18) {
    return 'zstd';
  }
  // "BZh" then the block size digit 1-9.
  if (
    head.length >= 4 &&
    head[0] === 0x42 &&
    head[1] === 0x5a &&
    head[2] === 0x68 &&
    head[3]! >= 0x31 &&
    head[3]! <= 0x39
  ) {
    return 'bzip2';
  }
  // gzip: ID1 ID2, then CM = 8 (deflate, the only method defined).
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  return null;
}

/**
 * A Transform from compressed to raw bytes. zlib works off the event loop (libuv pool); zstd
 * runs natively per chunk on the main thread, which is fast enough (GB/s) that a 64 KiB chunk
 * costs tens of microseconds. xz and bzip2 run on a codec thread (`codec-thread/codec-stream.ts`):
 * bzip2 because its only decoder is pure JavaScript (under 10 MB/s, hundreds of ms per 900 kB
 * block); xz because liblzma, through lzma-native, decodes all it is given at once and queues the
 * output whether or not anyone reads it (a 39 KB log of 256 MiB of zeros took the server from
 * 107 MB to 670 MB RSS, however early its reader stopped), while the codec thread feeds it
 * 1 KiB at a time and stops once its output waits unread. Corrupt input fails the stream.
 */
export function createDecompressor(c: Compression): Transform {
  switch (c) {
    case 'none':
      return new PassThrough();
    case 'gzip':
      return createGunzip(); // handles concatenated members, as gzip(1) does
    case 'br':
      return createBrotliDecompress();
    case 'zstd':
      return new zstd.DecompressStream(); // handles multiple and skippable frames
    case 'xz':
    case 'bzip2':
      return new CodecStream({ codec: 'decompress', compression: c });
  }
}

/**
 * A small compressed body (narinfo, log, listing) decoded whole, refusing more than `max` bytes
 * of output (`BODY_TOO_LARGE`): the decoder is destroyed at once then, so a body that expands a
 * thousandfold costs the limit, not what it would expand to. Corrupt input rejects with the
 * decoder's own error.
 */
export async function decompressBounded(data: Buffer, c: Compression, max: number): Promise<Buffer> {
  if (c === 'none') return readSmallBody(Readable.from([data]), max);
  const decoder = createDecompressor(c);
  decoder.on('error', () => undefined);
  decoder.end(data);
  try {
    return await readSmallBody(decoder, max);
  } catch (err) {
    decoder.destroy();
    throw err;
  }
}

/**
 * A small compressed body decoded in one call on the calling thread, where handing it to a
 * decoder stream would cost far more than decoding (microseconds for a few KiB). Undefined when
 * it would decode to more than `max` bytes, or for xz and bzip2, which only stream: the caller
 * streams those. Corrupt input throws the decoder's own error, as the streams do.
 */
export function decompressSmall(data: Buffer, c: Compression, max: number): Buffer | undefined {
  try {
    switch (c) {
      case 'none':
        return data.length <= max ? data : undefined;
      case 'zstd':
        return zstdDecompressSmall(data, max);
      case 'gzip':
        return gunzipSync(data, { maxOutputLength: max });
      case 'br':
        return brotliDecompressSync(data, { maxOutputLength: max });
      default:
        return undefined;
    }
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw err;
  }
}

/**
 * zstd of a small buffer in one call, on the calling thread: for NARs of a few KiB, where a
 * codec thread's hand-offs cost far more than compressing (microseconds at level 3).
 */
export function zstdCompressSmall(data: Uint8Array, level: number): Buffer {
  return zstd.compress(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { compressionLevel: level });
}

function startsWith(data: Uint8Array, prefix: Uint8Array): boolean {
  if (data.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (data[i] !== prefix[i]) return false;
  return true;
}
