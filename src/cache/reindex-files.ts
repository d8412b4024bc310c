// What reindex finds under a cache's prefix: which keys are what (Nix's binary-cache layout and
// narhub's `listing/`), and the Content-Encoding of small files, which storage does not keep.
import { brotliDecompressSync } from 'node:zlib';
import { sniffCompression } from '../io/compression.js';
import type { FileKind } from '../db/files-repo.js';
import { isDerivationPath, isValidHashPart, isValidStorePathName, parseStorePathBasename } from '../nix/store-path.js';
import type { BlobStore } from '../storage/blob-store.js';
import { BUILD_ID, REALISATION_ID } from './cache-files.js';

/** Bytes read from the start of a small file to tell its Content-Encoding. */
const HEAD_BYTES = 64 * 1024;
/** Brotli has no magic: a non-text file up to this size is fully read to try it. */
const MAX_BROTLI_PROBE = 64 * 1024 * 1024;

/** A log, listing, realisation or debuginfo file found in storage. */
export interface SmallFileEntry {
  kind: FileKind;
  name: string;
  key: string;
}

/** What a key of a cache is, by Nix's binary-cache layout (and narhub's `listing/`). */
export function classify(
  rel: string,
  key: string,
): 'narinfo' | 'nar' | 'listing' | 'ignored' | SmallFileEntry | undefined {
  if (rel === 'nix-cache-info') return 'ignored';
  const parts = rel.split('/');
  if (parts.length === 1) {
    if (rel.endsWith('.narinfo') && isValidHashPart(rel.slice(0, -'.narinfo'.length))) return 'narinfo';
    if (rel.endsWith('.ls') && isValidHashPart(rel.slice(0, -'.ls'.length)))
      return { kind: 'listing', name: rel.slice(0, -'.ls'.length), key };
    return undefined;
  }
  const [dir, a, b] = parts;
  if (parts.length === 2 && dir === 'nar') return 'nar';
  // narhub's own listing of a NAR file, matched to paths through their narinfo's URL.
  if (parts.length === 2 && dir === 'listing' && a!.endsWith('.ls')) return 'listing';
  if (parts.length === 2 && dir === 'log' && isDerivation(a!)) return { kind: 'log', name: a!, key };
  if (parts.length === 2 && dir === 'realisations' && a!.endsWith('.doi') && REALISATION_ID.test(a!.slice(0, -4))) {
    return { kind: 'realisation', name: a!.slice(0, -4), key };
  }
  if (
    parts.length === 3 &&
    dir === 'build-trace-v2' &&
    isDerivation(a!) &&
    b!.endsWith('.doi') &&
    isValidStorePathName(b!.slice(0, -4))
  ) {
    return { kind: 'build-trace', name: `${a}/${b!.slice(0, -4)}`, key };
  }
  if (parts.length === 2 && dir === 'debuginfo' && a!.endsWith('.debug') && BUILD_ID.test(a!.slice(0, -6))) {
    return { kind: 'debuginfo', name: a!.slice(0, -6), key };
  }
  return undefined;
}

function isDerivation(basename: string): boolean {
  try {
    return isDerivationPath(parseStorePathBasename(basename));
  } catch {
    return false;
  }
}

/**
 * A small file's size and the Content-Encoding it was uploaded with (`*-compression` settings
 * of Nix), which storage does not record: magic bytes tell gzip, zstd, xz and bzip2; text is
 * identity; anything else is tried as brotli, which has no magic.
 */
export async function probeEncoding(
  store: BlobStore,
  key: string,
): Promise<{ size: number; encoding: string | null } | undefined> {
  const read = await store.get(key);
  if (!read) return undefined;
  const size = read.totalSize;
  const chunks: Buffer[] = [];
  let have = 0;
  let head: Buffer | undefined;
  try {
    for await (const chunk of read.stream) {
      chunks.push(chunk as Buffer);
      have += (chunk as Buffer).length;
      if (head === undefined && have >= HEAD_BYTES) {
        head = Buffer.concat(chunks).subarray(0, HEAD_BYTES);
        // Decided by the head unless it may be brotli, which needs the whole file.
        if (sniffCompression(head.subarray(0, 16)) !== null || isText(head) || size > MAX_BROTLI_PROBE) break;
      }
    }
  } finally {
    read.stream.destroy();
  }
  const bytes = Buffer.concat(chunks);
  head ??= bytes.subarray(0, HEAD_BYTES);
  const magic = sniffCompression(head.subarray(0, 16));
  // A Content-Encoding is the compression's own name (compressionOfEncoding).
  if (magic !== null) return { size, encoding: magic === 'none' ? null : magic };
  if (size === 0 || isText(head)) return { size, encoding: null };
  if (bytes.length >= size) {
    try {
      brotliDecompressSync(bytes);
      return { size, encoding: 'br' };
    } catch {
      // Not brotli either: stored as it came.
    }
  }
  return { size, encoding: null };
}

/** Valid UTF-8 without NULs (a multi-byte character cut at the end is fine). */
function isText(bytes: Buffer): boolean {
  if (bytes.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
    return true;
  } catch {
    return false;
  }
}
