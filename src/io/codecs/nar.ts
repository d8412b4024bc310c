// The `nar` codec: one pass over a NAR that validates, hashes and lists it and, if asked,
// compresses it with zstd.
import { NarhubError } from '../../errors.js';
import { formatListing } from '../../nix/nar/listing.js';
import { NarContentHasher } from '../../nix/nar/content-hasher.js';
import { NarParser } from '../../nix/nar/nar-parser.js';
import type { CodecSpec, NarResult } from '../codec-thread/protocol.js';
import type { Codec, Emit } from './codec.js';
import { zstdCompress } from './zstd.js';

/**
 * The NAR parser (nix/nar/nar-parser.ts: every rule, its errors and summary) over every slab,
 * which then goes on to zstd with `compress`: one pass, whose output (if any) is the compressed
 * NAR.
 */
export function nar(emit: Emit, spec: Extract<CodecSpec, { codec: 'nar' }>): Codec {
  const parser = new NarParser<boolean>({ listing: spec.listing });
  const contentHasher = spec.contentHash ? new NarContentHasher(spec.contentHash) : undefined;
  const compressor = spec.compress ? zstdCompress(emit, spec.compress.level, spec.compress.workers) : undefined;
  let summary: NarResult | undefined;
  let ended = false;
  let size = 0;
  return {
    write(input) {
      size += input.byteLength;
      // Checked on the decoded bytes: a small compressed file may expand to any size.
      if (spec.maxSize !== undefined && size > spec.maxSize) {
        throw new NarhubError('BODY_TOO_LARGE', `the NAR is larger than the limit of ${spec.maxSize} bytes`);
      }
      parser.update(input);
      contentHasher?.update(input);
      compressor?.write(input);
    },
    end: () => void (ended = true),
    step() {
      if (!ended) return false;
      if (summary === undefined) {
        const s = parser.finish();
        // Formatted here: the listing of a large tree is a large object, its text one string.
        summary = {
          narHash: s.narHash,
          narSize: s.narSize,
          listing: s.listing === undefined ? undefined : formatListing(s.listing),
          ...(contentHasher ? { contentHash: contentHasher.finish() } : {}),
        };
        compressor?.end();
        return true;
      }
      return compressor?.step() ?? false;
    },
    result: () => summary,
  };
}
