import { createRequire } from 'node:module';

// unbzip2-stream's block decoder and bit reader (its own stream wrapper decodes every block it
// has input for in one synchronous call, so it cannot be paused between blocks; this driver can).
// The package ships no types: load them through require with the narrow shape used here.
type BitReader = ((n: number | null) => number) & { bytesRead: number };
const require = createRequire(import.meta.url);
const bz2 = require('unbzip2-stream/lib/bzip2') as {
  header(bits: BitReader): number;
  decompress(
    bits: BitReader,
    out: (byte: number) => void,
    buf: Int32Array,
    bufsize: number,
    streamCRC: number | null,
  ): number | null;
};
const bitIterator = require('unbzip2-stream/lib/bit_iterator') as (nextBuffer: () => Uint8Array) => BitReader;

/** Output leaves in buffers of this size (a block of 900 kB typically fits one). */
const OUT_CHUNK = 1024 * 1024;

/**
 * A bzip2 decoder driven one block at a time, so its caller can stop between blocks (for
 * backpressure, or to let other work run). Same rules as unbzip2-stream's stream, whose decoder
 * it uses: a block is decoded only once enough input is buffered to hold any block of the
 * stream's block size (or the input has ended); concatenated streams are decoded in turn; a
 * missing end-of-stream marker, a CRC mismatch or trailing garbage is an error.
 *
 * A block's output is handed out only after its CRC has been checked. A block is at most
 * 900 kB before bzip2's initial run-length step, so at most about 46 MB after it: that, not the
 * whole stream, is what one `step()` can produce.
 */
export class Bzip2Decoder {
  private readonly queue: Uint8Array[] = [];
  private bits: BitReader | undefined;
  private buffered = 0;
  private blockSize = 0;
  private streamCRC: number | null = null;
  private work: Int32Array | undefined;
  private ended = false;
  private done = false;

  /** Adds input; the decoder keeps a copy, so `input` may be reused at once. */
  write(input: Uint8Array): void {
    if (this.ended) throw new Error('bzip2: write after end');
    if (input.length === 0) return;
    this.queue.push(input.slice());
    this.buffered += input.length;
    this.bits ??= bitIterator(() => {
      const next = this.queue.shift();
      if (next === undefined) throw new Error('bzip2 data ends in the middle of a block');
      return next;
    });
  }

  /** No more input: what is buffered is decoded by the following steps. */
  end(): void {
    this.ended = true;
  }

  /**
   * Decodes one block (or reads one stream header) if it can, passing its output to `emit`.
   * Returns false when nothing can be done until more input arrives, or, after `end()`, when
   * everything has been decoded. Throws on corrupt or truncated input.
   */
  step(emit: (chunk: Uint8Array) => void): boolean {
    if (this.done) return false;
    const bits = this.bits;
    const unread = bits === undefined ? 0 : this.buffered - bits.bytesRead;
    if (bits !== undefined && (this.ended ? unread > 0 : unread + 1 >= (25_000 + 100_000 * this.blockSize || 4))) {
      try {
        this.decodeBlock(bits, emit);
      } catch (err) {
        // The bit reader is somewhere inside a block: nothing after this can be decoded.
        this.done = true;
        throw err;
      }
      return true;
    }
    if (!this.ended) return false;
    this.done = true;
    if (this.streamCRC !== null) throw new Error('bzip2 input stream ended prematurely');
    return false;
  }

  private decodeBlock(bits: BitReader, emit: (chunk: Uint8Array) => void): void {
    if (this.blockSize === 0) {
      this.blockSize = bz2.header(bits);
      this.streamCRC = 0;
      return;
    }
    const size = 100_000 * this.blockSize;
    // Every entry the decoder reads in a block it has written in that block: reusable.
    if (this.work === undefined || this.work.length < size) this.work = new Int32Array(size);
    const full: Uint8Array[] = [];
    let out = new Uint8Array(OUT_CHUNK);
    let n = 0;
    const crc = bz2.decompress(
      bits,
      (byte) => {
        out[n++] = byte;
        if (n === OUT_CHUNK) {
          full.push(out);
          out = new Uint8Array(OUT_CHUNK);
          n = 0;
        }
      },
      this.work,
      size,
      this.streamCRC,
    );
    if (crc === null) {
      // End-of-stream marker (its CRC checked): another stream may follow.
      this.blockSize = 0;
      this.streamCRC = null;
      return;
    }
    this.streamCRC = crc;
    for (const chunk of full) emit(chunk);
    if (n > 0) emit(out.subarray(0, n));
  }
}
