import { NarhubError } from '../errors.js';
import { compressionOfEncoding } from '../io/compression.js';
import { isDerivationPath, isValidHashPart, isValidStorePathName, parseStorePathBasename } from '../nix/store-path.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { FileKind, FileRow, FilesRepo } from '../db/files-repo.js';
import type { PathsRepo } from '../db/paths-repo.js';
import type { BlobStore } from '../storage/blob-store.js';

export interface SmallFile {
  body: Buffer;
  contentType?: string | undefined;
  contentEncoding?: string | undefined;
}

/** `sha256:<64 hex>!<output>`, the realisation id of Nix 2.8 – 2.34. */
/** The type of every build log, stored and served. */
export const LOG_CONTENT_TYPE = 'text/plain; charset=utf-8';

export const REALISATION_ID = /^sha256:[0-9a-f]{64}!([A-Za-z0-9+._?=-]+)$/;
export const BUILD_ID = /^[0-9a-f]{40}$/;

function derivation(drv: string): string {
  const p = parseStorePathBasename(drv);
  if (!isDerivationPath(p)) throw new NarhubError('STORE_PATH_INVALID', `${drv} is not a derivation`);
  return drv;
}

function outputName(out: string): string {
  if (!isValidStorePathName(out))
    throw new NarhubError('BAD_REQUEST', `invalid output name ${JSON.stringify(out.slice(0, 100))}`);
  return out;
}

/** The Content-Encoding a client stored a small file with (Nix's ls- and log-compression); null for none. */
function encoding(value: string | undefined): string | null {
  const compression = compressionOfEncoding(value);
  return compression === 'none' ? null : compression;
}

function requireJson(file: SmallFile, what: string): unknown {
  if (file.contentEncoding !== undefined && encoding(file.contentEncoding) !== null) return undefined;
  try {
    return JSON.parse(file.body.toString('utf8')) as unknown;
  } catch {
    throw new NarhubError('BAD_REQUEST', `${what} is not valid JSON`);
  }
}

/**
 * Logs, listings, realisations and debuginfo entries: small files addressed by name. Each is
 * validated as far as its format allows, stored in the blob store at Nix's own path, and
 * recorded with the Content-Encoding it arrived with so GET can replay it.
 */
export function createCacheFiles(deps: { store: BlobStore; files: FilesRepo; paths: PathsRepo }) {
  const { store, files, paths } = deps;

  async function save(
    kind: FileKind,
    cache: CacheRow,
    name: string,
    key: string,
    file: SmallFile,
    contentType: string,
  ): Promise<void> {
    const contentEncoding = encoding(file.contentEncoding);
    await store.put(key, file.body, { contentType, size: file.body.length });
    files.upsert(kind, cache.id, name, { storageKey: key, size: file.body.length, contentType, contentEncoding });
  }

  /** Resolves a request name to the kind and key it is stored under, validating it on the way. */
  function locate(kind: FileKind, cache: CacheRow, name: string): { name: string; key: string } {
    switch (kind) {
      case 'log':
        return { name: derivation(name), key: `${cache.name}/log/${name}` };
      case 'listing':
        if (!isValidHashPart(name))
          throw new NarhubError('STORE_PATH_INVALID', `invalid store path hash ${JSON.stringify(name.slice(0, 100))}`);
        return { name, key: `${cache.name}/${name}.ls` };
      case 'realisation':
        if (!REALISATION_ID.test(name))
          throw new NarhubError('BAD_REQUEST', `invalid realisation id ${JSON.stringify(name.slice(0, 120))}`);
        return { name, key: `${cache.name}/realisations/${name}.doi` };
      case 'build-trace': {
        const slash = name.indexOf('/');
        const drv = derivation(name.slice(0, slash));
        const out = outputName(name.slice(slash + 1));
        return { name: `${drv}/${out}`, key: `${cache.name}/build-trace-v2/${drv}/${out}.doi` };
      }
      case 'debuginfo':
        if (!BUILD_ID.test(name))
          throw new NarhubError(
            'BAD_REQUEST',
            `invalid build id ${JSON.stringify(name.slice(0, 100))}: expected 40 hex digits`,
          );
        return { name, key: `${cache.name}/debuginfo/${name}.debug` };
    }
  }

  return {
    async put(kind: FileKind, cache: CacheRow, rawName: string, file: SmallFile): Promise<void> {
      const { name, key } = locate(kind, cache, rawName);
      switch (kind) {
        case 'log':
          // Plain text whatever the uploader said: text/html would run a script in the cache's origin.
          return save(kind, cache, name, key, file, LOG_CONTENT_TYPE);
        case 'listing': {
          const listing = requireJson(file, 'listing') as { version?: unknown } | undefined;
          if (listing !== undefined && listing?.version !== 1)
            throw new NarhubError('BAD_REQUEST', 'listing must be {"version":1,"root":…}');
          // narhub builds its own listing from the NAR; a client's copy is kept only until then.
          const hashPart = name;
          if (paths.get(cache.id, hashPart)) return;
          return save(kind, cache, name, key, file, 'application/json');
        }
        case 'realisation':
        case 'build-trace': {
          const doc = requireJson(file, 'realisation') as { outPath?: unknown } | undefined;
          if (doc !== undefined && (typeof doc?.outPath !== 'string' || !safeBasename(doc.outPath))) {
            throw new NarhubError('BAD_REQUEST', 'realisation must have an outPath that is a store path basename');
          }
          return save(kind, cache, name, key, file, 'application/json');
        }
        case 'debuginfo': {
          requireJson(file, 'debuginfo entry');
          // Nix never overwrites a debuginfo entry; neither does narhub.
          if (files.get(kind, cache.id, name)) return;
          return save(kind, cache, name, key, file, 'application/json');
        }
      }
    },
    /** Metadata of a stored file, or undefined. Listings show only once their path is committed. */
    get(kind: FileKind, cache: CacheRow, rawName: string): FileRow | undefined {
      const { name } = locate(kind, cache, rawName);
      if (kind === 'listing' && !paths.get(cache.id, name)) return undefined;
      return files.get(kind, cache.id, name);
    },
  };
}

function safeBasename(text: string): boolean {
  try {
    parseStorePathBasename(text);
    return true;
  } catch {
    return false;
  }
}
