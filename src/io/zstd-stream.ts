import { availableParallelism } from 'node:os';
import { CodecStream } from './codec-thread/codec-stream.js';

/**
 * zstd workers a client uses by default: one per core, at most 4 (past that a push is limited by
 * the network or the server's decoding, about 1 s per GB on one core, not by compression).
 */
export const DEFAULT_CLIENT_ZSTD_WORKERS = Math.min(4, availableParallelism());

/**
 * A Transform that compresses to one zstd frame on a codec thread, which drives zstd's own
 * `workers` threads (multi-threaded compression called on the event loop blocks it whenever
 * input comes faster than the workers compress). zstd-napi's binding, the one the server uses:
 * Node 20 has no zstd in `node:zlib`, and Node 24's (experimental there) runs each chunk on
 * libuv's pool.
 */
export function createZstdCompressStream(level: number, workers: number): CodecStream {
  return new CodecStream({ codec: 'zstd', level, workers });
}
