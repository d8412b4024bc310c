import { OffThreadTransform } from './off-thread-transform.js';

/**
 * A zstd compressor whose work runs on a codec thread (`off-thread-transform.ts`, shared by all
 * streams), which runs zstd with `workers` threads of its own and hashes the output: the event
 * loop only copies input into slabs and takes the compressed chunks out. Needed because zstd's
 * multi-threaded mode, called on the event loop, blocks it whenever input arrives faster than
 * its threads compress (single calls of 50-200 ms measured with a fast producer).
 *
 * `digest()` and `bytes` (SHA-256 and length of the compressed output) are set once the
 * stream has finished, so no hashing of the output is needed on the event loop either.
 */
export class ZstdOffThread extends OffThreadTransform {
  constructor(opts: { level: number; workers: number }) {
    super({ codec: 'zstd-compress', level: opts.level, workers: opts.workers }, { hashOutput: true });
  }
}

export function createZstdOffThread(opts: { level: number; workers: number }): ZstdOffThread {
  return new ZstdOffThread(opts);
}
