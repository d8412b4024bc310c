import { addAbortSignal, type Readable } from 'node:stream';
import { NarhubError } from '../errors.js';

/**
 * Where a cache's files live: NARs, narinfos, listings, logs, realisations.
 *
 * Keys are relative, slash-separated paths built by the cache domain from validated parts, e.g.
 * `main/nar/0abc….nar.zst` or `main/0abc….narinfo`, so the store mirrors Nix's own binary-cache
 * layout and is a complete cache on its own. Every implementation checks keys again with
 * `assertValidKey` before they touch a disk or a bucket.
 *
 * Writes are atomic: a key shows either its previous content or the whole new content, never a
 * half-written file, whatever happens to the process or the stream mid-write.
 */
export interface BlobStore {
  /** Human-readable kind, for logs and health output. */
  readonly kind: string;

  /**
   * Streams `body` into `key`. Resolves once the bytes are durable and visible under `key`.
   * If the stream errors or `signal` aborts, nothing is left under `key` (nor as a leftover
   * temporary object) and the promise rejects.
   */
  put(
    key: string,
    body: Readable | AsyncIterable<Uint8Array> | Uint8Array,
    options?: BlobPutOptions,
  ): Promise<BlobInfo>;

  /**
   * Opens `key` for reading, or resolves `null` if it does not exist. With `range`, the stream
   * holds bytes `start..end` inclusive; the caller has validated the range against `stat().size`.
   */
  get(key: string, options?: BlobGetOptions): Promise<BlobRead | null>;

  /**
   * Optional, for stores whose puts can skip waiting for the disk (local): makes keys put with
   * `durable: false` durable, contents and names, in one batch. Stores that leave it out put
   * durably whatever `durable` says.
   */
  sync?(keys: string[]): Promise<void>;

  /** Size of `key`, or `null` when absent. */
  stat(key: string): Promise<BlobInfo | null>;

  /** Removes `key`. Removing an absent key is not an error. */
  delete(key: string): Promise<void>;

  /** Every key starting with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<string>;

  /** Releases clients, file handles and timers. */
  close(): Promise<void>;

  /**
   * Optional, for stores a client can read from directly (object stores): a URL that GETs `key`
   * without credentials until it expires, `expiresIn` seconds from now. Whoever holds the URL
   * can read the blob until then, so hand it only to a client already allowed to read it. The
   * client's own `Range` header is not part of the signature and works against the URL.
   * Stores that cannot do this leave it out; callers then stream the blob themselves.
   */
  presignGet?(key: string, options: BlobPresignOptions): Promise<string>;
  /**
   * Optional, for stores whose puts leave state of their own behind a crash (S3's multipart
   * uploads; local disk's temporary files go at open): removes what was started more than
   * `olderThanMs` ago and no put of this store is driving. Returns how many it removed.
   */
  abortStaleUploads?(olderThanMs: number): Promise<number>;
}

export interface BlobPresignOptions {
  /** Seconds the URL stays valid (S3: at most 604800, a week). */
  expiresIn: number;
}

export interface BlobPutOptions {
  signal?: AbortSignal;
  /** Exact length, when known up front (lets object stores skip multipart for small bodies). */
  size?: number;
  contentType?: string;
  /**
   * False: the blob is visible under `key` when the put resolves, but survives a power cut only
   * once `sync` has run for it (a process crash loses nothing either way). For a file nobody
   * reads before it is synced, so its fsync can overlap other work and share a batch. A body of
   * bytes only; default true.
   */
  durable?: boolean;
  /**
   * Runs once every byte is written (or, for a body of bytes, is in hand) but before the blob
   * becomes visible under `key`. If it throws, the write is abandoned exactly as if the body had
   * failed: this is where a caller checks hashes it computed on the way, so unverified bytes
   * never appear under a real name.
   */
  beforeCommit?: () => Promise<void>;
}

export interface BlobGetOptions {
  signal?: AbortSignal;
  range?: { start: number; end: number };
}

export interface BlobInfo {
  size: number;
}

export interface BlobRead {
  /** Bytes of the blob, or of the requested range. */
  stream: Readable;
  /** Length of `stream`. */
  size: number;
  /** Length of the whole blob. */
  totalSize: number;
  /**
   * Optional: the same bytes as `stream`, when the store read them all at once (small files).
   * A caller may send these instead of consuming the stream; the stream then needs no closing.
   */
  bytes?: Uint8Array;
  /**
   * Optional: gives a chunk that `stream` produced back to the store, to be read into again.
   * Call it only once nothing will look at the chunk's bytes any more (a socket has written
   * them), at most once per chunk; a caller that never calls it is fine, chunks are then
   * garbage as usual. Served at GB/s, a fresh buffer per chunk keeps V8's collector busy with
   * full collections every few tens of MB, costing more than the copying itself.
   */
  recycle?(chunk: Uint8Array): void;
}

/** Key grammar: relative, no empty, `.` or `..` segments, a conservative character set. */
const KEY_SEGMENT = /^[A-Za-z0-9+_=?!:.,@-]+$/;

export function isValidKey(key: string): boolean {
  if (key.length === 0 || key.length > 1024) return false;
  const segments = key.split('/');
  return segments.every((s) => s !== '.' && s !== '..' && KEY_SEGMENT.test(s));
}

export function assertValidKey(key: string): void {
  if (!isValidKey(key))
    throw new NarhubError('BAD_REQUEST', `invalid storage key ${JSON.stringify(key.slice(0, 100))}`);
}

/** `read`, its stream destroyed with an AbortError when `signal` aborts. */
export function abortableRead(read: BlobRead, signal: AbortSignal | undefined): BlobRead {
  if (signal !== undefined) addAbortSignal(signal, read.stream);
  return read;
}
