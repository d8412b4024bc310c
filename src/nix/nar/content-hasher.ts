import { createHash, type Hash as NodeHash } from 'node:crypto';
import type { HashAlgo } from '../hash.js';

/** What a content address is computed over: the whole NAR, or the contents of its single regular file. */
export type ContentHashSpec = { over: 'nar' | 'file'; algo: HashAlgo };

/** The hash as `<algo>:<base16>`, or why there is none (the NAR is not a single regular file). */
export type ContentHashResult = { hash: string } | { problem: string };

const str = (s: string): Uint8Array => {
  const padded = Math.ceil(s.length / 8) * 8;
  const out = new Uint8Array(8 + padded);
  new DataView(out.buffer).setUint32(0, s.length, true);
  out.set(Buffer.from(s, 'latin1'), 8);
  return out;
};
const concat = (...parts: string[]): Uint8Array => Buffer.concat(parts.map(str));

/**
 * How a NAR whose root is a regular file begins, up to the contents' length field. NAR strings
 * are fixed by the grammar, so these are the only two ways (with and without the executable
 * marker, which a flat hash does not cover: Nix 2.8's `nix-store --add-fixed` of an executable
 * file gives an executable flat path).
 */
const FILE_HEADS = [
  concat('nix-archive-1', '(', 'type', 'regular', 'contents'),
  concat('nix-archive-1', '(', 'type', 'regular', 'executable', '', 'contents'),
];
const LONGEST_HEAD = Math.max(...FILE_HEADS.map((h) => h.length)) + 8;

/**
 * Computes a content address's hash in the same pass as the NAR parser, chunk by chunk: over the
 * whole NAR (`fixed:r:`), or over the contents of a NAR that is one regular file (`fixed:` flat
 * and `text:`). It relies on the NAR being valid, which the parser beside it checks: a NAR
 * whose first bytes are not a file's header is a directory or a symlink, which has no flat hash.
 */
export class NarContentHasher {
  private readonly hash: NodeHash;
  private readonly head: number[] = [];
  private offset = 0;
  private contentStart = -1;
  private contentEnd = -1;
  private problem: string | undefined;

  constructor(private readonly spec: ContentHashSpec) {
    this.hash = createHash(spec.algo);
  }

  update(chunk: Uint8Array): void {
    if (this.spec.over === 'nar') {
      this.hash.update(chunk);
      return;
    }
    if (this.problem !== undefined) return;
    const start = this.offset;
    this.offset += chunk.length;
    if (this.contentStart < 0) {
      for (let i = 0; i < chunk.length && this.head.length < LONGEST_HEAD; i++) this.head.push(chunk[i]!);
      this.findContents();
      if (this.contentStart < 0) return;
    }
    const from = Math.max(this.contentStart, start);
    const to = Math.min(this.contentEnd, this.offset);
    if (from < to) this.hash.update(chunk.subarray(from - start, to - start));
  }

  private findContents(): void {
    let undecided = false;
    for (const prefix of FILE_HEADS) {
      const known = Math.min(this.head.length, prefix.length);
      if (!prefix.subarray(0, known).every((b, i) => b === this.head[i])) continue;
      if (this.head.length < prefix.length + 8) {
        undecided = true;
        continue;
      }
      const length = Buffer.from(this.head.slice(prefix.length, prefix.length + 8)).readBigUInt64LE();
      this.contentStart = prefix.length + 8;
      this.contentEnd = this.contentStart + Number(length);
      return;
    }
    if (!undecided) this.problem = 'the NAR is not a single regular file';
  }

  /** Call once the whole (valid) NAR went through `update`. */
  finish(): ContentHashResult {
    if (this.spec.over === 'file') {
      if (this.problem === undefined && this.contentStart < 0) this.problem = 'the NAR is not a single regular file';
      if (this.problem !== undefined) return { problem: this.problem };
    }
    return { hash: `${this.spec.algo}:${this.hash.digest('hex')}` };
  }
}
