// The `sha256` codec: a sink that hashes and counts its input (an upload's FileHash and FileSize).
import { createHash } from 'node:crypto';
import type { Sha256Result } from '../codec-thread/protocol.js';
import type { Codec } from './codec.js';

export function sha256(): Codec {
  const hash = createHash('sha256');
  let bytes = 0;
  return {
    write(input) {
      hash.update(input);
      bytes += input.length;
    },
    end: () => undefined,
    step: () => false,
    result: (): Sha256Result => ({ sha256: new Uint8Array(hash.digest()), bytes }),
  };
}
