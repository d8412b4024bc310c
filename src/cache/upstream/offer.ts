import { NarhubError } from '../../errors.js';
import { formatHash, parseHash } from '../../nix/hash.js';
import { parseNarInfo, type NarInfo } from '../../nix/narinfo.js';
import { parsePublicKey, verifyNarInfoSig } from '../../nix/signing.js';
import { parseStorePath } from '../../nix/store-path.js';
import { COMPRESSION_EXTENSION, type Compression } from '../../io/compression.js';
import type { UpstreamRow } from '../../db/upstreams-repo.js';
import { checkContentHash, claimedContentAddress } from '../content-address-check.js';

/** Compressions narhub can verify (and so store); an upstream narinfo naming another is refused. */
const VERIFIABLE = new Set<string>(Object.keys(COMPRESSION_EXTENSION));

/**
 * A path an upstream has, as narhub will commit it: `info` is the narinfo narhub builds from the
 * upstream's (its own URL `nar/<fileName>`, hashes in nix32, the upstream's signatures kept), and
 * `narUrl` is where the upstream serves the NAR file.
 */
export interface Offer {
  cacheId: number;
  hashPart: string;
  upstream: UpstreamRow;
  /** The upstream's narinfo text, as received. */
  upstreamText: string;
  info: NarInfo;
  /** `<FileHash nix32>.nar<ext>`: the name the ingest checks the bytes against. */
  fileName: string;
  narUrl: string;
  /** Bytes of the NAR file, when the narinfo says (FileSize, or NarSize uncompressed). */
  fileSize: number | undefined;
}

/**
 * Checks an upstream's narinfo for `hashPart` and turns it into an offer, or throws
 * NARINFO_INVALID saying why: it must parse, be for this path, be signed by one of the keys the
 * upstream is trusted under (any other signature is kept but vouches for nothing), name a
 * compression narhub can verify, and say the file's hash (Nix's FileHash; a raw NAR's is its
 * NarHash), since the NAR is stored under that name and checked against it. `ownKeyNames` are the
 * cache's own key names: a signature under one of them from elsewhere is dropped, never served.
 */
export function acceptUpstreamNarinfo(
  upstream: UpstreamRow,
  cacheId: number,
  hashPart: string,
  text: string,
  ownKeyNames: ReadonlySet<string>,
): Offer {
  const info = parseNarInfo(text);
  const storePath = parseStorePath(info.storePath);
  if (storePath.hashPart !== hashPart)
    throw new NarhubError('NARINFO_INVALID', `upstream answered for ${storePath.hashPart} when asked for ${hashPart}`);
  const keys = upstream.publicKeys.map((k) => parsePublicKey(k));
  if (!info.sigs.some((sig) => verifyNarInfoSig(keys, info, sig)))
    throw new NarhubError(
      'NARINFO_INVALID',
      `${info.storePath} is not signed by any key upstream ${upstream.url} is trusted under`,
    );
  if (!VERIFIABLE.has(info.compression))
    throw new NarhubError('NARINFO_INVALID', `Compression ${info.compression} cannot be verified here`);
  const compression = info.compression as Compression;
  const narHash = formatHash(parseHash(info.narHash), 'nix32');
  let fileHash: string;
  if (info.fileHash !== undefined) {
    const parsed = parseHash(info.fileHash);
    if (parsed.algo !== 'sha256')
      throw new NarhubError('NARINFO_INVALID', `FileHash must be sha256, not ${parsed.algo}`);
    fileHash = formatHash(parsed, 'nix32');
  } else if (compression === 'none') {
    fileHash = narHash;
  } else {
    throw new NarhubError('NARINFO_INVALID', 'a compressed NAR without FileHash cannot be verified');
  }
  const fileSize = info.fileSize ?? (compression === 'none' ? info.narSize : undefined);
  if (compression === 'none' && fileSize !== info.narSize)
    throw new NarhubError('NARINFO_INVALID', `FileSize ${fileSize} of a raw NAR is not its NarSize ${info.narSize}`);
  let narUrl: URL;
  try {
    narUrl = new URL(info.url, `${upstream.url}/`);
  } catch {
    throw new NarhubError('NARINFO_INVALID', `URL ${JSON.stringify(info.url.slice(0, 200))} is not a URL`);
  }
  if (narUrl.protocol !== 'http:' && narUrl.protocol !== 'https:')
    throw new NarhubError('NARINFO_INVALID', `URL ${narUrl.protocol} is not http: or https:`);
  const fileName = `${fileHash.slice('sha256:'.length)}.nar${COMPRESSION_EXTENSION[compression]}`;
  const ownInfo: NarInfo = {
    storePath: info.storePath,
    url: `nar/${fileName}`,
    compression,
    fileHash,
    narHash,
    narSize: info.narSize,
    references: [...new Set(info.references)].sort(),
    sigs: [...new Set(info.sigs.filter((s) => !ownKeyNames.has(s.slice(0, s.indexOf(':')))))].sort(),
  };
  if (fileSize !== undefined) ownInfo.fileSize = fileSize;
  if (info.deriver !== undefined) ownInfo.deriver = info.deriver;
  if (info.system !== undefined) ownInfo.system = info.system;
  if (info.ca !== undefined) {
    ownInfo.ca = info.ca;
    checkOfferedContentAddress(ownInfo);
  }
  return { cacheId, hashPart, upstream, upstreamText: text, info: ownInfo, fileName, narUrl: narUrl.href, fileSize };
}

/**
 * What can be checked of an offered path's CA before its NAR is here: the store path it gives,
 * and, for `fixed:r:sha256`, the NarHash. Other content addresses are checked by the commit,
 * once the NAR is stored; a client substituting meanwhile checks them itself.
 */
function checkOfferedContentAddress(info: NarInfo): void {
  try {
    const claim = claimedContentAddress(info);
    if (claim !== undefined && claim.needs === undefined) checkContentHash(claim, info.narHash, undefined);
  } catch (err) {
    throw new NarhubError('NARINFO_INVALID', (err as Error).message);
  }
}
