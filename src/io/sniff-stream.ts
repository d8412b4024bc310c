import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NarhubError } from '../errors.js';
import { createDecompressor, sniffCompression, type Compression } from './compression.js';

/** Enough for every magic, including the full 16-byte NAR prefix. */
const HEAD_BYTES = 16;

/**
 * Looks at the first bytes of `source`, picks the decompressor, and returns the decompressed
 * stream (head included). `hint` (extension, file or narinfo compression name) only matters for
 * brotli, which has no magic. Unknown bodies throw COMPRESSION_UNSUPPORTED and leave `source`
 * alone (not destroyed), so an HTTP caller can still answer on the same connection.
 *
 * Errors anywhere (source, decompressor) surface on the returned stream; destroying the
 * returned stream destroys the source.
 */
export async function sniffAndDecompress(
  source: Readable,
  hint?: string,
): Promise<{ compression: Compression; stream: Readable }> {
  // destroyOnReturn: false, so giving up on an unknown body detaches without destroying.
  const iterator = source.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer | string>;
  const parts: Buffer[] = [];
  let have = 0;
  let ended = false;
  while (have < HEAD_BYTES) {
    const next = await iterator.next();
    if (next.done === true) {
      ended = true;
      break;
    }
    const chunk = toBuffer(next.value);
    parts.push(chunk);
    have += chunk.length;
  }
  const head = Buffer.concat(parts, have);
  const compression = sniffCompression(head, hint);
  if (compression === null) {
    await iterator.return?.();
    throw new NarhubError('COMPRESSION_UNSUPPORTED', 'body is neither a NAR nor xz, zstd, bzip2, gzip or brotli');
  }

  const whole = prefixed(head, source, ended ? undefined : iterator);
  if (compression === 'none') return { compression, stream: whole };
  const decompressor = createDecompressor(compression);
  // pipeline destroys every stream on failure, so errors reach the caller's end.
  pipeline(whole, decompressor).catch(() => undefined);
  return { compression, stream: decompressor };
}

/**
 * The head we already took, then the rest of the source, pulled one chunk per read (so
 * backpressure holds). Not an async generator: its return() would wait for a pending next(),
 * so destroying it could never reach a stalled source. Here destroy goes straight to the source.
 */
function prefixed(head: Buffer, source: Readable, rest: AsyncIterator<Buffer | string> | undefined): Readable {
  let headSent = false;
  let pulling = false;
  return new Readable({
    read() {
      if (!headSent) {
        headSent = true;
        if (head.length > 0 && !this.push(head)) return;
      }
      if (rest === undefined) {
        this.push(null);
        return;
      }
      if (pulling) return;
      pulling = true;
      rest.next().then(
        (next) => {
          pulling = false;
          this.push(next.done === true ? null : toBuffer(next.value));
        },
        (err: unknown) => {
          pulling = false;
          this.destroy(err instanceof Error ? err : new Error(String(err)));
        },
      );
    },
    destroy(err, callback) {
      if (!source.destroyed) source.destroy(err ?? undefined);
      callback(err);
    },
  });
}

function toBuffer(chunk: Buffer | string): Buffer {
  return typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
}
