// The paths half of reindex: each `<hash>.narinfo` in storage read and checked against storage
// (prepare), then recorded in batches, one transaction each (record).
import { formatHash, hashesEqual, parseHash } from '../nix/hash.js';
import { parseNarInfo, type NarInfo } from '../nix/narinfo.js';
import { verifyNarInfoSig, type PublicKey } from '../nix/signing.js';
import { parseStorePath, parseStorePathBasename } from '../nix/store-path.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { FilesRepo } from '../db/files-repo.js';
import type { NarRow, NarsRepo } from '../db/nars-repo.js';
import type { PathsRepo } from '../db/paths-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { parseNarFileName } from './nar-file-name.js';
import { generatedListingKey, narStorageKey } from './nar-ingest.js';
import { narInfoStorageKey } from './narinfo-commit.js';
import { narFileOfUrl, sameContent } from './narinfo-content.js';

/** What one cache's reindex knows while it prepares paths. */
export interface CacheScan {
  store: BlobStore;
  cache: CacheRow;
  /** The cache's keys; with `trusted`, every narinfo must carry a valid signature by one. */
  keys: PublicKey[];
  trusted: boolean;
  /** NAR files and narhub listings listed under the cache's prefix (by file name). */
  narFiles: Set<string>;
  listingFiles: Set<string>;
  /** NAR files some prepared narinfo points at. */
  referenced: Set<string>;
  warn(message: string): void;
}

export interface PreparedPath {
  hashPart: string;
  info: NarInfo;
  text: string;
  name: string;
  fileName: string;
  nar: Pick<NarRow, 'storageKey' | 'compression' | 'fileHash' | 'fileSize' | 'narHash' | 'narSize' | 'listingKey'>;
}

export interface PathCounts {
  added: number;
  updated: number;
  unchanged: number;
  skipped: number;
}

export async function readText(store: BlobStore, key: string): Promise<string | null> {
  const read = await store.get(key);
  if (!read) return null;
  return Buffer.concat(await read.stream.toArray()).toString('utf8');
}

/** Reads and checks one narinfo against storage; undefined (with a warning) when it cannot be a path. */
export async function preparePath(scan: CacheScan, hashPart: string): Promise<PreparedPath | undefined> {
  const name = scan.cache.name;
  const skip = (why: string): undefined => {
    scan.warn(`${name}: ${hashPart}.narinfo skipped: ${why}`);
    return undefined;
  };
  const text = await readText(scan.store, narInfoStorageKey(name, hashPart));
  if (text === null) return skip('it disappeared while reindexing');
  let parsed: { info: NarInfo; storeName: string; fileName: string; fileHash: string } | string;
  try {
    parsed = parseStored(text, hashPart);
  } catch (err) {
    return skip(`it does not parse: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof parsed === 'string') return skip(parsed);
  const { info, storeName, fileName, fileHash } = parsed;
  scan.referenced.add(fileName);
  if (scan.trusted && !info.sigs.some((sig) => verifyNarInfoSig(scan.keys, info, sig))) {
    return skip(`it carries no valid signature by ${scan.keys.map((k) => k.name).join(' or ')}`);
  }
  const storageKey = narStorageKey(name, fileName);
  // Listed keys spare a request per missing NAR; the stat gives the size to check.
  const stat = scan.narFiles.has(fileName) ? await scan.store.stat(storageKey) : null;
  if (!stat) return skip(`its NAR ${storageKey} is missing`);
  if (info.fileSize !== undefined && info.fileSize !== stat.size) {
    return skip(`its NAR is ${stat.size} bytes, FileSize says ${info.fileSize}`);
  }
  return {
    hashPart,
    info,
    text,
    name: storeName,
    fileName,
    nar: {
      storageKey,
      compression: info.compression,
      fileHash,
      fileSize: stat.size,
      narHash: formatHash(parseHash(info.narHash), 'nix32'),
      narSize: info.narSize,
      listingKey: scan.listingFiles.has(fileName) ? generatedListingKey(name, fileName) : null,
    },
  };
}

/** A stored narinfo's facts, or why it cannot be a path of this cache at `hashPart`; throws when it does not parse. */
function parseStored(
  text: string,
  hashPart: string,
): { info: NarInfo; storeName: string; fileName: string; fileHash: string } | string {
  const info = parseNarInfo(text);
  const storePath = parseStorePath(info.storePath);
  if (storePath.hashPart !== hashPart) return `its StorePath ${info.storePath} belongs elsewhere`;
  if (info.deriver !== undefined) parseStorePathBasename(info.deriver);
  for (const ref of info.references) parseStorePathBasename(ref);
  const fileName = narFileOfUrl(info.url);
  if (fileName === undefined) return `its URL ${JSON.stringify(info.url)} is not nar/<file> of this cache`;
  let fileHash = `sha256:${parseNarFileName(fileName).fileHash}`;
  // Files narhub compressed itself (native uploads, recompression) are named by NarHash
  // (see cache/native-upload.ts): their FileHash is the narinfo's.
  if (
    info.fileHash !== undefined &&
    fileName.endsWith('.nar.zst') &&
    hashesEqual(parseHash(fileHash), parseHash(info.narHash))
  ) {
    fileHash = formatHash(parseHash(info.fileHash), 'nix32');
  }
  if (info.fileHash !== undefined && !hashesEqual(parseHash(info.fileHash), parseHash(fileHash))) {
    return `its FileHash ${info.fileHash} is not the hash in its URL`;
  }
  return { info, storeName: storePath.name, fileName, fileHash };
}

/**
 * Records prepared paths (call it in a transaction): a path the database lacks is added with its
 * NAR marked valid; one it holds with the same content gains the signatures storage has more of.
 */
export function recordPaths(
  repos: { nars: NarsRepo; paths: PathsRepo; files: FilesRepo },
  cache: CacheRow,
  batch: PreparedPath[],
  counts: PathCounts,
  warn: (message: string) => void,
): void {
  const { nars, paths, files } = repos;
  for (const p of batch) {
    const existing = paths.get(cache.id, p.hashPart);
    if (existing) {
      if (existing.narinfo === p.text) {
        counts.unchanged++;
        continue;
      }
      const stored = parseNarInfo(existing.narinfo);
      if (!sameContent(stored, p.info) || stored.url !== p.info.url) {
        warn(`${cache.name}: ${p.hashPart}.narinfo differs from the path in the database; kept the database's`);
        counts.skipped++;
        continue;
      }
      // Storage is written first, so a narinfo there with more signatures is the newer one.
      paths.addSignatures(
        existing.id,
        p.info.sigs.filter((s) => !stored.sigs.includes(s)),
        p.text,
      );
      counts.updated++;
      continue;
    }
    nars.putPending({ cacheId: cache.id, fileName: p.fileName, ...p.nar });
    const nar = nars.get(cache.id, p.fileName)!;
    if (nar.narHash !== p.nar.narHash || nar.narSize !== p.nar.narSize) {
      warn(`${cache.name}: ${p.hashPart}.narinfo skipped: the database records NAR ${p.fileName} with another NarHash`);
      counts.skipped++;
      continue;
    }
    if (nar.state !== 'valid') nars.markValid(nar.id);
    paths.insert({
      cacheId: cache.id,
      hashPart: p.hashPart,
      name: p.name,
      narId: nar.id,
      deriver: p.info.deriver ?? null,
      ca: p.info.ca ?? null,
      system: p.info.system ?? null,
      narinfo: p.text,
      references: [...new Set(p.info.references)].sort(),
      sigs: [...new Set(p.info.sigs)].sort(),
    });
    const listingKey = nar.listingKey ?? p.nar.listingKey;
    if (listingKey)
      files.upsert('listing', cache.id, p.hashPart, {
        storageKey: listingKey,
        size: 0,
        contentType: 'application/json',
        contentEncoding: null,
      });
    counts.added++;
  }
}
