import { pipeline } from 'node:stream/promises';
import { NarhubError, isNarhubError } from '../errors.js';
import {
  contentAddressedStorePath,
  contentHashNeeded,
  parseContentAddress,
  type ContentAddress,
} from '../nix/content-address.js';
import { formatHash, hashesEqual, parseHash } from '../nix/hash.js';
import type { ContentHashResult, ContentHashSpec } from '../nix/nar/content-hasher.js';
import type { NarInfo } from '../nix/narinfo.js';
import { parseStorePath } from '../nix/store-path.js';
import type { Compression } from '../io/compression.js';
import { createNarPass } from '../io/nar-pass.js';
import type { NarRow } from '../db/nars-repo.js';
import type { BlobStore } from '../storage/blob-store.js';

/** A narinfo's content address, parsed, and the hash its check needs beyond the NarHash. */
export interface ClaimedContentAddress {
  text: string;
  ca: ContentAddress;
  /** Undefined when the NarHash is the content address's hash (`fixed:r:sha256`). */
  needs: ContentHashSpec | undefined;
}

const mismatch = (message: string) => new NarhubError('CONTENT_ADDRESS_MISMATCH', message);

/**
 * The checks of a `CA` that need no NAR: it parses as Nix parses it, and the store path is the
 * one it gives, with these references (Nix's makeFixedOutputPath / makeTextPath). Undefined for
 * an input-addressed path.
 */
export function claimedContentAddress(info: NarInfo): ClaimedContentAddress | undefined {
  if (info.ca === undefined) return undefined;
  let ca: ContentAddress;
  try {
    ca = parseContentAddress(info.ca);
  } catch (err) {
    throw mismatch(isNarhubError(err) ? err.message : String(err));
  }
  const path = parseStorePath(info.storePath);
  const others = info.references.filter((r) => r !== path.basename);
  let expected: string;
  try {
    expected = contentAddressedStorePath(path.name, ca, others, others.length !== info.references.length);
  } catch (err) {
    if (!isNarhubError(err)) throw err;
    throw mismatch(`CA ${info.ca}: ${err.message}`);
  }
  if (expected !== info.storePath) {
    throw mismatch(`StorePath ${info.storePath} is not the path CA ${info.ca} gives (${expected})`);
  }
  return { text: info.ca, ca, needs: contentHashNeeded(ca) };
}

/** That the NAR has the content its `CA` claims: `computed` is the `needs` hash, computed over the NAR. */
export function checkContentHash(
  claim: ClaimedContentAddress,
  narHash: string,
  computed: ContentHashResult | undefined,
): void {
  if (claim.needs === undefined) {
    if (!hashesEqual(parseHash(narHash), claim.ca.hash))
      throw mismatch(`CA ${claim.text} does not match the NAR, whose hash is ${narHash}`);
    return;
  }
  if (computed === undefined)
    throw new NarhubError('INTERNAL', `no ${claim.needs.algo} hash to check CA ${claim.text}`);
  if ('problem' in computed) throw mismatch(`CA ${claim.text} needs a single regular file, but ${computed.problem}`);
  const actual = parseHash(computed.hash);
  if (!hashesEqual(actual, claim.ca.hash)) {
    const what = claim.needs.over === 'nar' ? 'the NAR' : 'its file';
    throw mismatch(`CA ${claim.text} does not match the NAR: ${what} hashes to ${formatHash(actual, 'nix32')}`);
  }
}

/**
 * Computes a content-address hash over a NAR file already stored (a narinfo PUT names a NAR
 * uploaded before it): decoded and hashed on codec threads, like any NAR pass.
 */
export async function hashStoredNar(store: BlobStore, nar: NarRow, spec: ContentHashSpec): Promise<ContentHashResult> {
  const read = await store.get(nar.storageKey);
  if (!read) throw new NarhubError('STORAGE_ERROR', `NAR ${nar.storageKey} is missing from storage`);
  const { input, pass } = createNarPass({
    listing: false,
    decompress: nar.compression as Compression,
    contentHash: spec,
  });
  const result = pass.result();
  result.catch(() => undefined);
  await pipeline(read.stream, input);
  const summary = await result;
  if (summary.narHash !== nar.narHash && !hashesEqual(parseHash(summary.narHash), parseHash(nar.narHash))) {
    throw new NarhubError('STORAGE_ERROR', `NAR ${nar.storageKey} no longer hashes to its NarHash`);
  }
  return summary.contentHash!;
}
