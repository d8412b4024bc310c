import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { createDecompressor, isCompression } from '../io/compression.js';
import { parseDerivation, type Derivation } from '../nix/derivation.js';
import { hashesEqual, parseHash, sha256Of } from '../nix/hash.js';
import { regularFileOfNar } from '../nix/nar/regular-file.js';
import { parseNarInfo, type NarInfo } from '../nix/narinfo.js';
import { parsePublicKey, verifyNarInfoSig, type PublicKey } from '../nix/signing.js';
import { DEFAULT_STORE_DIR, parseStorePath } from '../nix/store-path.js';
import {
  createCacheHttp,
  okStatus,
  responseBytes,
  responseText,
  retryableStatus,
  type CacheHttp,
} from './cache-http.js';

/** Fetching from the cache failed; `retryable` is false when another try cannot help. */
export class CacheFetchError extends Error {
  constructor(
    message: string,
    readonly retryable = true,
  ) {
    super(message);
    this.name = 'CacheFetchError';
  }
}

/** Parsed `.drv`s kept per spoke: derivations are immutable, and jobs share inputs. */
const DRV_MEMO_LIMIT = 20_000;
/** A `.drv` NAR larger than this is refused (Nix's own derivations are a few KiB, rarely MiBs). */
const MAX_DRV_NAR = 64 * 1024 * 1024;
/** A derivation's path names its contents, so one memo serves every cache and job. */
const drvs = new Map<string, Derivation>();

/**
 * The spoke's view of the project cache: what Nix's substituter would do, done by the spoke so
 * that one long-lived `nix-store --serve` can take the result. Every narinfo must carry a
 * signature by one of the job's trusted keys (Nix is told not to check, since it was checked
 * here), and Nix checks each NAR against its NarHash as it adds it.
 */
export function createCacheClient(
  cacheUrl: string,
  token: string,
  trustedPublicKeys: readonly string[],
  http: CacheHttp = sharedHttp(),
) {
  const keys: PublicKey[] = trustedPublicKeys.map((k) => parsePublicKey(k));
  const auth = { authorization: `Bearer ${token}` };

  async function get(path: string, signal: AbortSignal | undefined): Promise<IncomingMessage | null> {
    let res: IncomingMessage;
    try {
      res = await http.request('GET', `${cacheUrl}/${path}`, { headers: auth, signal });
    } catch (err) {
      throw new CacheFetchError(`GET ${cacheUrl}/${path} failed: ${(err as Error).message}`);
    }
    const status = res.statusCode ?? 0;
    if (status === 404) {
      res.resume();
      return null;
    }
    if (!okStatus(status)) {
      const text = await responseText(res, 200).catch(() => '');
      throw new CacheFetchError(`GET ${cacheUrl}/${path}: HTTP ${status} ${text}`.trim(), retryableStatus(status));
    }
    return res;
  }

  /** A body read whole; a connection lost on the way is worth a retry. */
  async function read<T>(path: string, res: Readable, how: (res: Readable) => Promise<T>): Promise<T> {
    try {
      return await how(res);
    } catch (err) {
      throw new CacheFetchError(`GET ${cacheUrl}/${path} failed while reading: ${(err as Error).message}`);
    }
  }

  return {
    /** The signed narinfo of a store path, or null when the cache lacks it. */
    async narinfo(storePath: string, signal?: AbortSignal): Promise<NarInfo | null> {
      const path = `${parseStorePath(storePath).hashPart}.narinfo`;
      const res = await get(path, signal);
      if (!res) return null;
      const info = parseNarInfo(await read(path, res, (r) => responseText(r)));
      if (info.storePath !== storePath)
        throw new CacheFetchError(`the cache answered for ${storePath} with ${info.storePath}`, false);
      if (!info.sigs.some((sig) => verifyNarInfoSig(keys, info, sig))) {
        throw new CacheFetchError(
          `${storePath} in the cache has no signature by a trusted key ` +
            `(${trustedPublicKeys.map((k) => k.split(':')[0]).join(', ')})`,
          false,
        );
      }
      return info;
    },

    /** The NAR of a narinfo, uncompressed, as a stream. */
    async nar(info: NarInfo, signal?: AbortSignal): Promise<Readable> {
      const compression = info.compression;
      if (!isCompression(compression))
        throw new CacheFetchError(`${info.storePath}: unsupported compression ${compression}`, false);
      const res = await get(info.url, signal);
      if (!res) throw new CacheFetchError(`${info.storePath}: the cache has its narinfo but not ${info.url}`);
      const raw = createDecompressor(compression);
      res.on('error', (err) => raw.destroy(err));
      return res.pipe(raw);
    },

    /** A `.drv` from the cache, parsed (checked against its NarHash); memoized. */
    async derivation(drvPath: string, signal?: AbortSignal): Promise<Derivation> {
      const known = drvs.get(drvPath);
      if (known) return known;
      const info = await this.narinfo(drvPath, signal);
      if (!info)
        throw new CacheFetchError(
          `${drvPath} is not in the cache ${cacheUrl} (the hub uploads every .drv it schedules)`,
        );
      const nar = await read(info.url, await this.nar(info, signal), (r) => responseBytes(r, MAX_DRV_NAR));
      if (nar.length !== info.narSize || !hashesEqual(sha256Of(nar), parseHash(info.narHash))) {
        throw new CacheFetchError(`${drvPath}: the NAR from the cache does not match its narinfo`);
      }
      const drv = parseDerivation(regularFileOfNar(nar).toString('utf8'));
      if (drvs.size >= DRV_MEMO_LIMIT) drvs.delete(drvs.keys().next().value!);
      drvs.set(drvPath, drv);
      return drv;
    },
  };
}

export type CacheClient = ReturnType<typeof createCacheClient>;

let shared: CacheHttp | undefined;
/** Connections for callers that bring none (tests, one-off use). */
function sharedHttp(): CacheHttp {
  return (shared ??= createCacheHttp());
}

/** A narinfo's references as full store paths. */
export const referencePaths = (info: NarInfo): string[] => info.references.map((r) => `${DEFAULT_STORE_DIR}/${r}`);
