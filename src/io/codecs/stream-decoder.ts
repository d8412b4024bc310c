// A decoder that is a Node stream (zlib's gzip and brotli, lzma-native's xz), driven on a codec
// thread: its work runs on libuv's pool or liblzma's own thread, and what comes out arrives here.
import type { Transform } from 'node:stream';
import type { Codec, DecoderOutput } from './codec.js';

/**
 * Drives `stream`, pausing it while the output window is full; input is written in pieces of
 * at most `piece` bytes, each waiting for the stream to take it.
 */
export function streamDecoder(output: DecoderOutput, wake: () => void, stream: Transform, piece: number): Codec {
  let error: Error | undefined;
  let ended = false;
  const whenEnded: (() => void)[] = [];
  stream.on('data', (chunk: Buffer) => {
    output.take(chunk);
    if (output.full()) stream.pause();
  });
  stream.on('error', (err: Error) => {
    error = err;
    wake();
  });
  stream.on('end', () => {
    ended = true;
    for (const resolve of whenEnded.splice(0)) resolve();
  });
  const written = (chunk: Uint8Array) =>
    new Promise<void>((resolve, reject) => {
      stream.write(chunk, (err?: Error | null) => (err ? reject(err) : resolve()));
    });
  return {
    async write(input) {
      for (let at = 0; at < input.length; at += piece) await written(input.subarray(at, at + piece));
    },
    end() {
      stream.end();
      return new Promise<void>((resolve, reject) => {
        if (ended) resolve();
        else whenEnded.push(resolve);
        stream.once('error', reject);
      });
    },
    step() {
      if (error) throw error;
      if (stream.isPaused() && !output.full()) stream.resume();
      return false;
    },
    destroy: () => void stream.destroy(),
  };
}
