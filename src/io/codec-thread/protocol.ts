// The messages between a codec stream on the main thread (codec-stream.ts), its codec thread
// (worker.ts), and two linked streams' threads; and what each codec reports.
import type { MessagePort } from 'node:worker_threads';
import type { ContentHashResult, ContentHashSpec } from '../../nix/nar/content-hasher.js';

/** What a thread decodes: every compression narhub accepts. */
export type Decompression = 'zstd' | 'gzip' | 'br' | 'xz' | 'bzip2';

/**
 * What a thread can run: `decompress`; `zstd`, compression alone (a push client's, driving
 * zstd's own `workers` threads); `sha256`, a sink (hash and length of the input); and
 * `nar`, one pass over a NAR that validates it against every NAR rule while hashing and listing
 * it and, with `compress`, compresses it with zstd, which is then its output (without, it is a
 * sink), and with `contentHash` also computes a content address's hash (nix/nar/content-hasher.ts).
 * Sinks report their result with the end.
 */
export type CodecSpec =
  | { codec: 'decompress'; compression: Decompression }
  | { codec: 'zstd'; level: number; workers: number }
  | { codec: 'sha256' }
  | {
      codec: 'nar';
      listing: boolean;
      compress?: { level: number; workers: number };
      maxSize?: number;
      contentHash?: ContentHashSpec;
    };

/** What `sha256` reports. */
export interface Sha256Result {
  sha256: Uint8Array;
  bytes: number;
}

/** What `nar` reports: the NAR parser's summary, with the listing formatted. */
export interface NarResult {
  /** `sha256:<nix32>`. */
  narHash: string;
  narSize: number;
  /** The `.ls` listing as `formatListing` writes it; undefined without `listing`. */
  listing: string | undefined;
  /** With `contentHash`: the hash, or why the NAR has none. */
  contentHash?: ContentHashResult;
}

/**
 * Main thread → codec thread. Input buffers travel back with their `ack`, to be filled again;
 * `read` returns credit for output the main thread has passed on. A stream opened with `link`
 * sends its output into that port instead of to the main thread; `link` gives a stream the
 * other end, from which it takes input as well (see `LinkMessage`).
 */
export type ToThread =
  | { type: 'open'; id: number; spec: CodecSpec; hash: boolean; link?: MessagePort }
  | { type: 'link'; id: number; port: MessagePort }
  | { type: 'data'; id: number; buffer: ArrayBuffer; length: number }
  | { type: 'read'; id: number; bytes: number }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number };

/**
 * Codec thread → main thread. `end` carries the length (and, if asked, SHA-256) of the output
 * and what the codec reports. `error` carries the code and details of a NarhubError (an invalid
 * NAR), so it comes back as the same error.
 */
export type FromThread =
  | { type: 'data'; id: number; chunk: Uint8Array }
  | { type: 'ack'; id: number; buffer: ArrayBuffer }
  | { type: 'end'; id: number; sha256: Uint8Array | undefined; bytes: number; result: unknown }
  | { type: 'error'; id: number; message: string; code?: string; details?: Record<string, unknown> };

/**
 * Between two linked streams, thread to thread: output chunks (their buffers moved along) and
 * their end one way; credit for what was consumed, with its buffer to be filled again, the other
 * way. The same window as towards the main thread bounds what is on its way.
 */
export type LinkMessage =
  | { type: 'data'; buffer: ArrayBuffer; length: number }
  | { type: 'end' }
  | { type: 'read'; bytes: number; buffer: ArrayBuffer };
