import { createHash, type Hash } from 'node:crypto';
import { NarhubError } from '../../errors.js';
import { encodeNix32 } from '../nix32.js';
import { addEntry, createEntries, decodeNarString, type NarListing, type NarListingNode } from './listing.js';

export interface NarSummary {
  /** `sha256:<nix32>` over the exact NAR bytes. */
  narHash: string;
  narSize: number;
  /** Undefined when the NAR has more entries than the parser lists (`maxListingEntries`). */
  listing: NarListing | undefined;
}

/** What `finish()` returns for a parser built with `listing: false`. */
export type NarHashSummary = Omit<NarSummary, 'listing'> & { listing: undefined };

/** `new NarParser()` and `{ listing: true }` give a NarSummary; `{ listing: false }` does not. */
export type NarSummaryFor<L extends boolean> = L extends false ? NarHashSummary : NarSummary;

export interface NarParserOptions<L extends boolean = boolean> {
  /** A node whose path has this many components or more is rejected. Default 64 (Nix 2.35+). */
  maxDepth?: number;
  /** Build the `.ls` listing (memory grows with the number of entries). Default true. */
  listing?: L;
  /**
   * Past this many entries the listing is given up (`listing` undefined), so that a NAR of
   * millions of tiny files costs no more memory than any other. Default MAX_LISTING_ENTRIES.
   */
  maxListingEntries?: number;
}

/**
 * Entries a listing may have: ~200 bytes of memory each while it is built, so ~40 MB at most;
 * larger trees (a few packages have this many files) get no listing, which Nix treats as absent.
 */
export const MAX_LISTING_ENTRIES = 200_000;

// The union of every Nix version's limits: the latest are the strictest.
const MAX_NAME = 255;
const MAX_TARGET = 4095;
// Latest Nix caps tag strings at 32 bytes; we are stricter still: a tag whose length matches no
// token expected at that point is rejected as soon as its length field is read.

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const MAGIC = ascii('nix-archive-1');
const OPEN = ascii('(');
const CLOSE = ascii(')');
const TYPE = ascii('type');
const REGULAR = ascii('regular');
const SYMLINK = ascii('symlink');
const DIRECTORY = ascii('directory');
const EXECUTABLE = ascii('executable');
const CONTENTS = ascii('contents');
const TARGET = ascii('target');
const ENTRY = ascii('entry');
const NAME = ascii('name');
const NODE = ascii('node');

// Grammar states: what the next str() must be (docs/protocol.md, NAR).
const S_MAGIC = 0;
const S_NODE_OPEN = 1;
const S_TYPE = 2;
const S_TYPE_VALUE = 3;
const S_REGULAR_TAG = 4; // `executable` or `contents`
const S_EXEC_VALUE = 5; // the empty string after `executable`
const S_CONTENTS_TAG = 6; // `contents` after the executable marker
const S_CONTENTS = 7; // file bytes: streamed, never buffered
const S_NODE_CLOSE = 8;
const S_TARGET_TAG = 9;
const S_TARGET = 10;
const S_DIR_TAG = 11; // `entry` or `)`
const S_ENTRY_OPEN = 12;
const S_NAME_TAG = 13;
const S_NAME = 14;
const S_NODE_TAG = 15;
const S_ENTRY_CLOSE = 16;
const S_END = 17;

// Fixed tokens accepted in each tag state (empty for the states handled specially).
const EXPECTED: readonly (readonly Uint8Array[])[] = [
  [MAGIC],
  [OPEN],
  [TYPE],
  [REGULAR, SYMLINK, DIRECTORY],
  [EXECUTABLE, CONTENTS],
  [],
  [CONTENTS],
  [],
  [CLOSE],
  [TARGET],
  [],
  [ENTRY, CLOSE],
  [OPEN],
  [NAME],
  [],
  [NODE],
  [CLOSE],
  [],
];

const EXPECTED_LENGTHS: readonly (readonly number[])[] = EXPECTED.map((tokens) => tokens.map((t) => t.length));

// Lexer phases inside one str(): 8-byte length, body, zero padding.
const P_LEN = 0;
const P_BODY = 1;
const P_PAD = 2;

interface DirFrame {
  prevName: Uint8Array | undefined;
  entries: Record<string, NarListingNode>;
}

type RegularNode = Extract<NarListingNode, { type: 'regular' }>;

/**
 * Incremental NAR validator: feed any split of the bytes to `update`, then call `finish`.
 * A two-level state machine: a lexer splits the input into str()s, buffering only small tokens
 * (≤ 4 KiB) and merely counting file contents; the grammar layer checks each token as soon as
 * it is complete (lengths as soon as the length field is). Memory stays flat whatever the NAR
 * size, apart from the optional listing.
 */
export class NarParser<L extends boolean = true> {
  private readonly maxDepth: number;
  private wantListing: boolean;
  private readonly maxListingEntries: number;
  private listingEntries = 0;
  private readonly hash: Hash = createHash('sha256');
  private consumed = 0;
  private failure: NarhubError | undefined;
  private summary: NarSummary | NarHashSummary | undefined;

  // Lexer
  private phase = P_LEN;
  private readonly lenBuf = new Uint8Array(8);
  private lenFill = 0;
  private strStart = 0; // offset of the current str's length field
  private strLen = 0;
  private remaining = 0; // body bytes still to come
  private padRemaining = 0;
  private readonly tokBuf = new Uint8Array(MAX_TARGET + 1);
  private tokFill = 0;

  // Grammar
  private state = S_MAGIC;
  private readonly dirs: DirFrame[] = [];
  private root: NarListingNode | undefined;
  private pendingName = '';
  private currentFile: RegularNode | undefined;

  constructor(options: NarParserOptions<L> = {}) {
    this.maxDepth = options.maxDepth ?? 64;
    this.wantListing = options.listing ?? true;
    this.maxListingEntries = options.maxListingEntries ?? MAX_LISTING_ENTRIES;
  }

  /** Feed the next bytes. Throws NAR_INVALID ('<reason> at byte <offset>') as soon as the input is invalid. */
  update(chunk: Uint8Array): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.summary !== undefined) throw new Error('NarParser.update() called after finish()');
    if (chunk.length === 0) return;
    this.hash.update(chunk);
    try {
      this.consume(chunk);
    } catch (err) {
      if (err instanceof NarhubError) this.failure = err;
      throw err;
    }
  }

  /** Input ended: throws NAR_INVALID if truncated; returns hash, size and listing. */
  finish(): NarSummaryFor<L> {
    if (this.failure !== undefined) throw this.failure;
    if (this.summary !== undefined) return this.summary as NarSummaryFor<L>;
    if (this.state !== S_END || this.phase !== P_LEN) {
      this.failure = invalid('unexpected end of archive', this.consumed);
      throw this.failure;
    }
    const narHash = `sha256:${encodeNix32(this.hash.digest())}`;
    this.summary =
      this.root === undefined
        ? { narHash, narSize: this.consumed, listing: undefined }
        : { narHash, narSize: this.consumed, listing: { version: 1, root: this.root } };
    return this.summary as NarSummaryFor<L>;
  }

  private consume(chunk: Uint8Array): void {
    const base = this.consumed;
    const n = chunk.length;
    let pos = 0;
    while (pos < n) {
      if (this.phase === P_LEN) {
        if (this.lenFill === 0) {
          this.strStart = base + pos;
          if (this.state === S_END) throw invalid('trailing bytes after the end of the archive', base + pos);
        }
        let lo: number;
        let hi: number;
        if (this.lenFill === 0 && n - pos >= 8) {
          lo = readU32(chunk, pos);
          hi = readU32(chunk, pos + 4);
          pos += 8;
        } else {
          const take = Math.min(8 - this.lenFill, n - pos);
          this.lenBuf.set(chunk.subarray(pos, pos + take), this.lenFill);
          this.lenFill += take;
          pos += take;
          if (this.lenFill < 8) break;
          this.lenFill = 0;
          lo = readU32(this.lenBuf, 0);
          hi = readU32(this.lenBuf, 4);
        }
        // Beyond 2^53 a length cannot be a real size (and would lose precision).
        if (hi > 0x1fffff) {
          if (this.state === S_MAGIC) throw this.unexpected('', this.strStart);
          throw invalid('length field too large', this.strStart);
        }
        this.beginStr(hi * 0x100000000 + lo);
        continue;
      }

      if (this.phase === P_BODY) {
        const take = Math.min(this.remaining, n - pos);
        if (this.state !== S_CONTENTS) {
          if (this.state === S_NAME || this.state === S_TARGET) this.scanBytes(chunk, pos, take, base + pos);
          // A byte loop: tokens are short, and subarray() would allocate per token.
          const buf = this.tokBuf;
          let fill = this.tokFill;
          for (let i = pos, end = pos + take; i < end; i++) buf[fill++] = chunk[i]!;
          this.tokFill = fill;
        }
        pos += take;
        this.remaining -= take;
        if (this.remaining === 0) this.endBody();
        continue;
      }

      // P_PAD
      const take = Math.min(this.padRemaining, n - pos);
      for (let i = pos; i < pos + take; i++) {
        if (chunk[i] !== 0) throw invalid('non-zero padding', base + i);
      }
      pos += take;
      this.padRemaining -= take;
      if (this.padRemaining === 0) this.phase = P_LEN;
    }
    this.consumed = base + n;
  }

  /** A length field was read: check it against what the grammar expects here. */
  private beginStr(len: number): void {
    const at = this.strStart;
    switch (this.state) {
      case S_CONTENTS:
        if (this.currentFile !== undefined) {
          this.currentFile.size = len;
          this.currentFile.narOffset = at + 8;
        }
        break;
      case S_NAME:
        if (len === 0) throw invalid('empty entry name', at);
        if (len > MAX_NAME) throw invalid(`entry name longer than ${MAX_NAME} bytes`, at);
        break;
      case S_TARGET:
        if (len === 0) throw invalid('empty symlink target', at);
        if (len > MAX_TARGET) throw invalid(`symlink target longer than ${MAX_TARGET} bytes`, at);
        break;
      case S_EXEC_VALUE:
        if (len !== 0) throw invalid("'executable' marker value must be empty", at);
        break;
      default: {
        if (!EXPECTED_LENGTHS[this.state]!.includes(len)) throw this.unexpected(`a ${len}-byte string`, at);
      }
    }
    this.strLen = len;
    this.remaining = len;
    this.padRemaining = (8 - (len % 8)) % 8;
    this.tokFill = 0;
    this.phase = P_BODY;
    if (len === 0) this.endBody();
  }

  /** NUL and '/' checks as bytes arrive, so the error offset is the offending byte. */
  private scanBytes(chunk: Uint8Array, pos: number, len: number, at: number): void {
    const isName = this.state === S_NAME;
    for (let i = 0; i < len; i++) {
      const b = chunk[pos + i];
      if (b === 0) throw invalid(isName ? 'NUL byte in entry name' : 'NUL byte in symlink target', at + i);
      if (b === 0x2f && isName) throw invalid("'/' in entry name", at + i);
    }
  }

  private endBody(): void {
    this.phase = this.padRemaining > 0 ? P_PAD : P_LEN;
    if (this.state === S_CONTENTS) {
      this.state = S_NODE_CLOSE;
      return;
    }
    this.onToken(this.strLen, this.strStart);
  }

  /**
   * A complete small token, in tokBuf[0, len) (padding not yet read: padding is purely lexical).
   * Fixed tokens are compared in place; only names and targets are copied out.
   */
  private onToken(len: number, at: number): void {
    switch (this.state) {
      case S_MAGIC:
        if (!this.is(len, MAGIC)) throw invalid("input doesn't look like a Nix archive", at);
        this.state = S_NODE_OPEN;
        return;
      case S_NODE_OPEN:
        this.expect(len, OPEN, at);
        this.state = S_TYPE;
        return;
      case S_TYPE:
        this.expect(len, TYPE, at);
        this.state = S_TYPE_VALUE;
        return;
      case S_TYPE_VALUE:
        if (this.is(len, REGULAR)) {
          if (this.wantListing) {
            this.currentFile = { type: 'regular', size: 0, narOffset: 0 };
            this.attach(this.currentFile);
          }
          this.state = S_REGULAR_TAG;
        } else if (this.is(len, SYMLINK)) {
          this.state = S_TARGET_TAG;
        } else if (this.is(len, DIRECTORY)) {
          const entries = createEntries();
          if (this.wantListing) this.attach({ type: 'directory', entries });
          this.dirs.push({ prevName: undefined, entries });
          this.state = S_DIR_TAG;
        } else {
          throw this.unexpected(this.tokenText(len), at);
        }
        return;
      case S_REGULAR_TAG:
        if (this.is(len, EXECUTABLE)) {
          if (this.currentFile !== undefined) this.currentFile.executable = true;
          this.state = S_EXEC_VALUE;
        } else if (this.is(len, CONTENTS)) {
          this.state = S_CONTENTS;
        } else {
          throw this.unexpected(this.tokenText(len), at);
        }
        return;
      case S_EXEC_VALUE:
        this.state = S_CONTENTS_TAG;
        return;
      case S_CONTENTS_TAG:
        this.expect(len, CONTENTS, at);
        this.state = S_CONTENTS;
        return;
      case S_NODE_CLOSE:
        this.expect(len, CLOSE, at);
        this.closeNode();
        return;
      case S_TARGET_TAG:
        this.expect(len, TARGET, at);
        this.state = S_TARGET;
        return;
      case S_TARGET:
        if (this.wantListing) this.attach({ type: 'symlink', target: decodeNarString(this.tokBuf.subarray(0, len)) });
        this.state = S_NODE_CLOSE;
        return;
      case S_DIR_TAG:
        if (this.is(len, ENTRY)) {
          this.state = S_ENTRY_OPEN;
        } else if (this.is(len, CLOSE)) {
          this.dirs.pop();
          this.closeNode();
        } else {
          throw this.unexpected(this.tokenText(len), at);
        }
        return;
      case S_ENTRY_OPEN:
        this.expect(len, OPEN, at);
        this.state = S_NAME_TAG;
        return;
      case S_NAME_TAG:
        this.expect(len, NAME, at);
        this.state = S_NAME;
        return;
      case S_NAME: {
        const tok = this.tokBuf.slice(0, len);
        if (tok.length <= 2 && tok[0] === 0x2e && (tok.length === 1 || tok[1] === 0x2e)) {
          throw invalid(`invalid entry name ${quote(tok)}`, at);
        }
        const dir = this.dirs[this.dirs.length - 1]!;
        // Buffer.compare is memcmp (unsigned bytes), then shorter first: Nix's std::string order.
        if (dir.prevName !== undefined && Buffer.compare(tok, dir.prevName) <= 0) {
          throw invalid(`NAR directory is not sorted: ${quote(tok)} after ${quote(dir.prevName)}`, at);
        }
        dir.prevName = tok;
        if (this.wantListing) this.pendingName = decodeNarString(tok);
        this.state = S_NODE_TAG;
        return;
      }
      case S_NODE_TAG:
        this.expect(len, NODE, at);
        // dirs.length is the depth (number of path components) of the node that follows.
        if (this.dirs.length >= this.maxDepth) {
          throw invalid(`nesting exceeds maximum depth of ${this.maxDepth}`, at);
        }
        this.state = S_NODE_OPEN;
        return;
      case S_ENTRY_CLOSE:
        this.expect(len, CLOSE, at);
        this.state = S_DIR_TAG;
        return;
      default:
        throw new Error(`NarParser: token in unexpected state ${this.state}`);
    }
  }

  private closeNode(): void {
    this.currentFile = undefined;
    this.state = this.dirs.length === 0 ? S_END : S_ENTRY_CLOSE;
  }

  private attach(node: NarListingNode): void {
    if (++this.listingEntries > this.maxListingEntries) {
      // Too many entries to list: drop what was built and list nothing more.
      this.wantListing = false;
      this.root = undefined;
      this.currentFile = undefined;
      return;
    }
    const parent = this.dirs[this.dirs.length - 1];
    if (parent === undefined) this.root = node;
    else addEntry(parent.entries, this.pendingName, node);
  }

  private is(len: number, literal: Uint8Array): boolean {
    if (len !== literal.length) return false;
    const buf = this.tokBuf;
    for (let i = 0; i < len; i++) if (buf[i] !== literal[i]) return false;
    return true;
  }

  private expect(len: number, literal: Uint8Array, at: number): void {
    if (!this.is(len, literal)) throw this.unexpected(this.tokenText(len), at);
  }

  private tokenText(len: number): string {
    return quote(this.tokBuf.subarray(0, len));
  }

  private unexpected(got: string, at: number): NarhubError {
    if (this.state === S_MAGIC) return invalid("input doesn't look like a Nix archive", at);
    const wanted = EXPECTED[this.state]!.map(quote).join(' or ');
    return invalid(`expected ${wanted}, got ${got}`, at);
  }
}

function invalid(reason: string, offset: number): NarhubError {
  return new NarhubError('NAR_INVALID', `${reason} at byte ${offset}`, { details: { offset } });
}

function readU32(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16)) + b[i + 3]! * 0x1000000;
}

function quote(bytes: Uint8Array): string {
  return JSON.stringify(decodeNarString(bytes)).replace(/^"|"$/g, "'");
}
