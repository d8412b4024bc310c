import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliDecompressSync } from 'node:zlib';
import type { Database } from 'better-sqlite3';
import { NarhubError } from '../errors.js';
import { parseCacheInfo } from '../nix/cache-info.js';
import { formatHash, hashesEqual, parseHash } from '../nix/hash.js';
import { parseNarInfo, type NarInfo } from '../nix/narinfo.js';
import {
  formatPublicKey,
  formatSecretKey,
  generateKeyPair,
  parsePublicKey,
  parseSecretKey,
  publicKeyOf,
  verifyNarInfoSig,
  type PublicKey,
} from '../nix/signing.js';
import {
  isDerivationPath,
  isValidHashPart,
  isValidStorePathName,
  parseStorePath,
  parseStorePathBasename,
} from '../nix/store-path.js';
import { sniffCompression } from '../io/compression.js';
import { mapLimit } from '../io/map-limit.js';
import { createCachesRepo, type CacheRow, type CacheSettingsRow } from '../db/caches-repo.js';
import { createFilesRepo, type FileKind } from '../db/files-repo.js';
import { createNarsRepo } from '../db/nars-repo.js';
import { createPathsRepo } from '../db/paths-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import { BUILD_ID, REALISATION_ID } from './cache-files.js';
import { assertValidCacheName } from '../cache-name.js';
import type { CacheSettings } from './caches.js';
import { parseNarFileName } from './nar-file-name.js';
import { generatedListingKey, narStorageKey } from './nar-ingest.js';
import { narInfoStorageKey } from './narinfo-commit.js';

export interface ReindexDeps {
  db: Database;
  store: BlobStore;
  /** Where signing keys live: `<cache>-<N>.secret` files are restored as the cache's keys. */
  keysDir: string;
}

export interface ReindexOptions {
  /** Only this cache; every cache found in storage otherwise. */
  cache?: string | undefined;
  /**
   * Settings for a cache the database does not know (storage does not record them): e.g. its
   * declaration in the config. Unset fields default to private, the priority of its
   * `nix-cache-info`, and no redirects: a cache whose visibility is unknown is not made public.
   */
  settingsFor?: ((name: string) => Partial<CacheSettings> | undefined) | undefined;
  /** Told about everything skipped or guessed, one line each. */
  warn(message: string): void;
  /** Storage requests in flight at once (default 16). */
  concurrency?: number | undefined;
}

export interface ReindexSummary {
  cache: string;
  /** The cache had no row and was created from storage. */
  created: boolean;
  private: boolean;
  /** Names of the cache's signing keys after the run, oldest first. */
  keys: string[];
  /** A key was generated because none could be restored. */
  generatedKey: string | undefined;
  paths: { added: number; updated: number; unchanged: number; skipped: number };
  logs: number;
  listings: number;
  realisations: number;
  debuginfo: number;
  /** NAR files no restored narinfo points at (unclaimed or superseded uploads); left as they are. */
  unreferencedNars: number;
  /** Keys under the cache's prefix that narhub does not know what to do with. */
  unknownKeys: number;
}

/** Narinfos prepared (read, parsed, checked against storage) before one transaction records them. */
const BATCH = 256;
/** Bytes read from the start of a small file to tell its Content-Encoding. */
const HEAD_BYTES = 64 * 1024;
/** Brotli has no magic: a non-text file up to this size is fully read to try it. */
const MAX_BROTLI_PROBE = 64 * 1024 * 1024;

interface PreparedPath {
  hashPart: string;
  info: NarInfo;
  text: string;
  name: string;
  fileName: string;
  nar: {
    storageKey: string;
    compression: string;
    fileHash: string;
    fileSize: number;
    narHash: string;
    narSize: number;
    listingKey: string | null;
  };
}

interface SmallFileEntry {
  kind: FileKind;
  name: string;
  key: string;
}

/**
 * Rebuilds the database's view of the caches from the blob store alone, which holds every
 * cache in Nix's own layout: a cache is a prefix holding `nix-cache-info`; its paths are its
 * signed `<hash>.narinfo` files whose NAR is present; logs, listings, realisations and
 * debuginfo are recorded as found. Signing keys come back from `<keysDir>/<cache>-N.secret`.
 * Idempotent: what the database already holds is kept, what it lacks is added, and a narinfo
 * that gained signatures in storage updates its path.
 */
export async function reindex(deps: ReindexDeps, options: ReindexOptions): Promise<ReindexSummary[]> {
  const { db, store, keysDir } = deps;
  const { warn } = options;
  const limit = options.concurrency ?? 16;
  const caches = createCachesRepo(db);
  const nars = createNarsRepo(db);
  const paths = createPathsRepo(db);
  const files = createFilesRepo(db);

  async function findCaches(): Promise<string[]> {
    if (options.cache !== undefined) {
      assertValidCacheName(options.cache);
      if (!(await store.stat(`${options.cache}/nix-cache-info`))) {
        throw new NarhubError(
          'CACHE_NOT_FOUND',
          `storage holds no cache ${options.cache} (no ${options.cache}/nix-cache-info)`,
        );
      }
      return [options.cache];
    }
    const names: string[] = [];
    for await (const key of store.list('')) {
      const m = /^([^/]+)\/nix-cache-info$/.exec(key);
      if (!m) continue;
      try {
        assertValidCacheName(m[1]!);
        names.push(m[1]!);
      } catch {
        warn(`${m[1]}: not a valid cache name, skipped`);
      }
    }
    return names.sort();
  }

  async function readText(key: string): Promise<string | null> {
    const read = await store.get(key);
    if (!read) return null;
    return Buffer.concat(await read.stream.toArray()).toString('utf8');
  }

  function ensureCache(name: string, priority: number): { cache: CacheRow; created: boolean } {
    const existing = caches.get(name);
    if (existing) return { cache: existing, created: false };
    const wanted = options.settingsFor?.(name) ?? {};
    const settings: CacheSettingsRow = {
      private: wanted.private ?? true,
      priority: wanted.priority ?? priority,
      redirectNars: wanted.redirectNars ?? false,
      redirectExpiry: wanted.redirectExpiry ?? 300,
      recompressToZstd: wanted.recompressToZstd ?? false,
    };
    return { cache: caches.insert(name, settings), created: true };
  }

  /** Restores key rows from key files; generates a key only when the cache would have none. */
  function restoreKeys(cache: CacheRow): { keys: PublicKey[]; trusted: boolean; generated: string | undefined } {
    const known = new Set(caches.keys(cache.id).map((k) => k.name));
    const pattern = new RegExp(`^${cache.name.replace(/[-]/g, '\\-')}-([1-9][0-9]{0,8})\\.secret$`);
    let entries: string[] = [];
    try {
      entries = readdirSync(keysDir);
    } catch {
      // No keys directory: nothing to restore.
    }
    const found = entries
      .map((file) => ({ file, m: pattern.exec(file) }))
      .filter((e): e is { file: string; m: RegExpExecArray } => e.m !== null)
      .map((e) => ({ file: join(keysDir, e.file), generation: Number(e.m[1]) }))
      .sort((a, b) => a.generation - b.generation);
    for (const { file, generation } of found) {
      const name = `${cache.name}-${generation}`;
      if (known.has(name)) continue;
      try {
        const secret = parseSecretKey(readFileSync(file, 'utf8'));
        if (secret.name !== name) {
          warn(`${cache.name}: key file ${file} holds key ${secret.name}, not ${name}; skipped`);
          continue;
        }
        caches.insertKey(cache.id, secret.name, formatPublicKey(publicKeyOf(secret)), file, generation);
        known.add(name);
      } catch (err) {
        warn(`${cache.name}: cannot restore key file ${file}: ${messageOf(err)}`);
      }
    }
    const declaredFile = options.settingsFor?.(cache.name)?.signingKeyFile;
    if (declaredFile !== undefined && !caches.keys(cache.id).some((k) => k.secretKeyFile === declaredFile)) {
      try {
        const secret = parseSecretKey(readFileSync(declaredFile, 'utf8'));
        const generation = caches.keys(cache.id).reduce((g, k) => Math.max(g, k.generation), 0) + 1;
        if (!known.has(secret.name))
          caches.insertKey(cache.id, secret.name, formatPublicKey(publicKeyOf(secret)), declaredFile, generation);
      } catch (err) {
        warn(`${cache.name}: cannot use its declared signing key file ${declaredFile}: ${messageOf(err)}`);
      }
    }
    let rows = caches.keys(cache.id);
    let generated: string | undefined;
    if (rows.length === 0) {
      // Without a key the cache could not sign new paths; its old paths keep their signatures.
      const generation = found.reduce((g, k) => Math.max(g, k.generation), 0) + 1;
      const pair = generateKeyPair(`${cache.name}-${generation}`);
      mkdirSync(keysDir, { recursive: true, mode: 0o700 });
      const file = join(keysDir, `${pair.secret.name}.secret`);
      writeFileSync(file, formatSecretKey(pair.secret), { mode: 0o600, flag: 'wx' });
      chmodSync(file, 0o600);
      caches.insertKey(cache.id, pair.secret.name, formatPublicKey(pair.public), file, generation);
      generated = pair.secret.name;
      warn(
        `${cache.name}: no signing key to restore; generated ${generated} (clients must trust ${formatPublicKey(pair.public)} for paths signed from now on)`,
      );
      rows = caches.keys(cache.id);
    }
    return { keys: rows.map((k) => parsePublicKey(k.publicKey)), trusted: generated === undefined, generated };
  }

  async function reindexCache(name: string): Promise<ReindexSummary> {
    const infoText = await readText(`${name}/nix-cache-info`);
    let priority = 40;
    try {
      priority = parseCacheInfo(infoText ?? '').priority ?? 40;
    } catch {
      warn(`${name}: nix-cache-info has no valid Priority; using 40`);
    }
    const { cache, created } = ensureCache(name, priority);
    if (created && options.settingsFor?.(name)?.private === undefined) {
      warn(
        `${name}: recreated as a private cache (storage does not record visibility); declare it in the config or reindex with --public to make it public`,
      );
    }
    const { keys, trusted, generated } = restoreKeys(cache);

    // One pass over the cache's keys, sorted into what each will become.
    const narinfos: string[] = [];
    const narFiles = new Set<string>();
    const listingFiles = new Set<string>();
    const small: SmallFileEntry[] = [];
    const clientListings: SmallFileEntry[] = [];
    let unknownKeys = 0;
    for await (const key of store.list(`${name}/`)) {
      const rel = key.slice(name.length + 1);
      const entry = classify(rel, key);
      if (entry === 'narinfo') narinfos.push(rel.slice(0, -'.narinfo'.length));
      else if (entry === 'nar') narFiles.add(rel.slice('nar/'.length));
      else if (entry === 'listing') listingFiles.add(rel.slice('listing/'.length, -'.ls'.length));
      else if (entry === 'ignored') continue;
      else if (entry === undefined) unknownKeys++;
      else if (entry.kind === 'listing') clientListings.push(entry);
      else small.push(entry);
    }
    if (unknownKeys > 0) warn(`${name}: ${unknownKeys} keys in storage are not part of a Nix binary cache; left alone`);

    const summary: ReindexSummary = {
      cache: name,
      created,
      private: cache.private,
      keys: [],
      generatedKey: generated,
      paths: { added: 0, updated: 0, unchanged: 0, skipped: 0 },
      logs: 0,
      listings: 0,
      realisations: 0,
      debuginfo: 0,
      unreferencedNars: 0,
      unknownKeys,
    };
    const referenced = new Set<string>();

    /** Reads and checks one narinfo against storage; undefined (with a warning) when it cannot be a path. */
    async function prepare(hashPart: string): Promise<PreparedPath | undefined> {
      const key = narInfoStorageKey(name, hashPart);
      const skip = (why: string): undefined => {
        warn(`${name}: ${hashPart}.narinfo skipped: ${why}`);
        return undefined;
      };
      const text = await readText(key);
      if (text === null) return skip('it disappeared while reindexing');
      let info: NarInfo;
      let storeName: string;
      let fileName: string;
      let fileHash: string;
      try {
        info = parseNarInfo(text);
        const storePath = parseStorePath(info.storePath);
        if (storePath.hashPart !== hashPart) return skip(`its StorePath ${info.storePath} belongs elsewhere`);
        storeName = storePath.name;
        if (info.deriver !== undefined) parseStorePathBasename(info.deriver);
        for (const ref of info.references) parseStorePathBasename(ref);
        const m = /^nar\/([^/?#]+)$/.exec(info.url);
        if (!m) return skip(`its URL ${JSON.stringify(info.url)} is not nar/<file> of this cache`);
        fileName = m[1]!;
        fileHash = `sha256:${parseNarFileName(fileName).fileHash}`;
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
          return skip(`its FileHash ${info.fileHash} is not the hash in its URL`);
        }
      } catch (err) {
        return skip(`it does not parse: ${messageOf(err)}`);
      }
      referenced.add(fileName);
      if (trusted && !info.sigs.some((sig) => verifyNarInfoSig(keys, info, sig))) {
        return skip(`it carries no valid signature by ${keys.map((k) => k.name).join(' or ')}`);
      }
      const storageKey = narStorageKey(name, fileName);
      // Listed keys spare a request per missing NAR; the stat gives the size to check.
      const stat = narFiles.has(fileName) ? await store.stat(storageKey) : null;
      if (!stat) return skip(`its NAR ${storageKey} is missing`);
      if (info.fileSize !== undefined && info.fileSize !== stat.size) {
        return skip(`its NAR is ${stat.size} bytes, FileSize says ${info.fileSize}`);
      }
      const listingKey = generatedListingKey(name, fileName);
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
          listingKey: listingFiles.has(fileName) ? listingKey : null,
        },
      };
    }

    /** Records prepared paths in one transaction. */
    const record = db.transaction((batch: PreparedPath[]) => {
      for (const p of batch) {
        const existing = paths.get(cache.id, p.hashPart);
        if (existing) {
          if (existing.narinfo === p.text) {
            summary.paths.unchanged++;
            continue;
          }
          const stored = parseNarInfo(existing.narinfo);
          const same =
            stored.storePath === p.info.storePath &&
            hashesEqual(parseHash(stored.narHash), parseHash(p.info.narHash)) &&
            stored.narSize === p.info.narSize &&
            sameSet(stored.references, p.info.references) &&
            stored.url === p.info.url;
          if (!same) {
            warn(`${name}: ${p.hashPart}.narinfo differs from the path in the database; kept the database's`);
            summary.paths.skipped++;
            continue;
          }
          // Storage is written first, so a narinfo there with more signatures is the newer one.
          paths.addSignatures(
            existing.id,
            p.info.sigs.filter((s) => !stored.sigs.includes(s)),
            p.text,
          );
          summary.paths.updated++;
          continue;
        }
        nars.putPending({ cacheId: cache.id, fileName: p.fileName, ...p.nar });
        const nar = nars.get(cache.id, p.fileName)!;
        if (nar.narHash !== p.nar.narHash || nar.narSize !== p.nar.narSize) {
          warn(`${name}: ${p.hashPart}.narinfo skipped: the database records NAR ${p.fileName} with another NarHash`);
          summary.paths.skipped++;
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
        summary.paths.added++;
      }
    });

    for (let i = 0; i < narinfos.length; i += BATCH) {
      const prepared = await mapLimit(narinfos.slice(i, i + BATCH), limit, prepare);
      summary.paths.skipped += prepared.filter((p) => p === undefined).length;
      record(prepared.filter((p): p is PreparedPath => p !== undefined));
    }

    // Small files; a client's listing only where narhub built none for a present path.
    const listingsFromClients = clientListings.filter(
      (e) => paths.get(cache.id, e.name) && !files.get('listing', cache.id, e.name),
    );
    const sized = await mapLimit([...small, ...listingsFromClients], limit, async (entry) => {
      const probe = await probeEncoding(store, entry.key);
      return probe && { entry, ...probe };
    });
    db.transaction(() => {
      for (const found of sized) {
        if (!found) continue;
        const { entry, size, encoding } = found;
        const contentType = entry.kind === 'log' ? 'text/plain; charset=utf-8' : 'application/json';
        files.upsert(entry.kind, cache.id, entry.name, {
          storageKey: entry.key,
          size,
          contentType,
          contentEncoding: encoding,
        });
      }
    })();
    // What the database holds now, whether this run or an earlier one recorded it.
    summary.logs = files.count('log', cache.id);
    summary.listings = files.count('listing', cache.id);
    summary.realisations = files.count('realisation', cache.id) + files.count('build-trace', cache.id);
    summary.debuginfo = files.count('debuginfo', cache.id);
    summary.unreferencedNars = [...narFiles].filter((f) => !referenced.has(f)).length;
    summary.keys = caches.keys(cache.id).map((k) => k.name);
    return summary;
  }

  const summaries: ReindexSummary[] = [];
  for (const name of await findCaches()) summaries.push(await reindexCache(name));
  return summaries;
}

/** What a key of a cache is, by Nix's binary-cache layout (and narhub's `listing/`). */
function classify(rel: string, key: string): 'narinfo' | 'nar' | 'listing' | 'ignored' | SmallFileEntry | undefined {
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
async function probeEncoding(
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

function sameSet(a: string[], b: string[]): boolean {
  const sa = new Set(a);
  const sb = new Set(b);
  return sa.size === sb.size && [...sa].every((x) => sb.has(x));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
