import type { Database } from 'better-sqlite3';
import { NarhubError } from '../errors.js';
import { hashesEqual, parseHash } from '../nix/hash.js';
import { formatNarInfo, parseNarInfo, type NarInfo } from '../nix/narinfo.js';
import { parsePublicKey, signNarInfo, verifyNarInfoSig } from '../nix/signing.js';
import { parseStorePath, parseStorePathBasename, type StorePath } from '../nix/store-path.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { FilesRepo } from '../db/files-repo.js';
import type { NarRow, NarsRepo } from '../db/nars-repo.js';
import type { PathRow, PathsRepo } from '../db/paths-repo.js';
import type { ContentHashResult } from '../nix/nar/content-hasher.js';
import type { BlobStore } from '../storage/blob-store.js';
import { createKeyedLock } from '../io/keyed-lock.js';
import type { AccessLog } from './access-log.js';
import type { CacheRegistry } from './caches.js';
import { checkContentHash, claimedContentAddress, hashStoredNar } from './content-address-check.js';
import type { NarSync } from './nar-sync.js';
import { checkUploaderSignatures } from './uploader-signatures.js';
import { narFileOfUrl, sameContent } from './narinfo-content.js';
import type { UploadHolds } from './upload-holds.js';

/** A Nix signature: key name, colon, base64 of 64 bytes. */
const SIGNATURE = /^[^\s:]+:[A-Za-z0-9+/]{86}==$/;

export const narInfoStorageKey = (cache: string, hashPart: string) => `${cache}/${hashPart}.narinfo`;

/** What narhub knows of a NAR file once it verified it (a `nars` row). */
export type NarFacts = Pick<NarRow, 'fileName' | 'compression' | 'fileHash' | 'fileSize' | 'narHash' | 'narSize'>;

export interface CommitOptions {
  /** The hash the path's `CA` needs, if the upload computed it on the way in; else read from the stored NAR. */
  contentHash?: ContentHashResult | undefined;
  /**
   * A path fetched from an upstream: its signatures are the upstream's, checked when it was
   * offered, and the uploader-signature policy (`uploader-signatures.ts`) is not theirs.
   */
  fromUpstream?: boolean;
}

export interface CommitResult {
  /** False when the path was already committed (signatures may have been added). */
  created: boolean;
  narinfo: string;
  /** The NAR file the path points at. */
  narId: number;
}

/**
 * The commit point of every upload, whichever way it came: a narinfo PUT of the Nix protocol,
 * or narhub's native upload, which builds the same NarInfo from its metadata line and goes
 * through this very function. A path becomes visible only when its NAR was uploaded to this
 * cache and verified, the claimed hashes and sizes are the ones narhub computed, and every
 * reference is already present. narhub then signs the path itself and serves its own,
 * normalised narinfo from then on. A later commit may add signatures, never change content.
 */
export function createPathCommit(deps: {
  db: Database;
  store: BlobStore;
  nars: NarsRepo;
  paths: PathsRepo;
  files: FilesRepo;
  registry: CacheRegistry;
  holds: UploadHolds;
  access: AccessLog;
  narSync: NarSync;
}) {
  const { db, store, nars, paths, files, registry, holds, access, narSync } = deps;

  /** GC must leave alone the path and the references of an upload in flight (docs/architecture.md). */
  function hold(cache: CacheRow, hashPart: string, info: NarInfo): () => void {
    return holds.acquire(cache.id, [hashPart, ...info.references.map((r) => r.slice(0, 32))]);
  }

  /** Signatures by retired keys are not kept, whoever sends them. */
  function withoutRetired(cache: CacheRow, sigs: string[]): string[] {
    const retired = registry.retiredKeyNames(cache);
    return retired.size === 0 ? sigs : sigs.filter((s) => !retired.has(s.slice(0, s.indexOf(':'))));
  }

  function ourKeys(cache: CacheRow) {
    return registry.publicKeys(cache).map((k) => parsePublicKey(k));
  }

  /**
   * Signatures under the cache's key names must verify; those under other names must pass the
   * cache's uploader-signature policy (`uploader-signatures.ts`), counting the `stored` ones.
   * A path fetched from an upstream keeps the upstream's signatures (`policy: false`).
   */
  function checkSignatures(cache: CacheRow, info: NarInfo, stored: string[] = [], policy = true): void {
    const keys = ourKeys(cache);
    if (policy) checkUploaderSignatures(cache, info, new Set(keys.map((k) => k.name)), stored);
    for (const sig of info.sigs) {
      if (!SIGNATURE.test(sig))
        throw new NarhubError('NARINFO_INVALID', `Sig: malformed signature ${JSON.stringify(sig.slice(0, 100))}`);
      const keyName = sig.slice(0, sig.indexOf(':'));
      const own = keys.filter((k) => k.name === keyName);
      // Nobody may put words in this cache's mouth: a signature under one of its key names must verify.
      if (own.length > 0 && !verifyNarInfoSig(own, info, sig)) {
        throw new NarhubError('NARINFO_INVALID', `Sig: signature by ${keyName} does not verify for this path`);
      }
    }
  }

  function checkAgainstNar(info: NarInfo, nar: NarFacts): void {
    if (!hashesEqual(parseHash(info.narHash), parseHash(nar.narHash))) {
      throw new NarhubError(
        'NAR_HASH_MISMATCH',
        `NarHash ${info.narHash} does not match the uploaded NAR (${nar.narHash})`,
      );
    }
    if (info.narSize !== nar.narSize) {
      throw new NarhubError(
        'NAR_SIZE_MISMATCH',
        `NarSize ${info.narSize} does not match the uploaded NAR (${nar.narSize})`,
      );
    }
    if (info.fileHash !== undefined && !hashesEqual(parseHash(info.fileHash), parseHash(nar.fileHash))) {
      throw new NarhubError(
        'FILE_HASH_MISMATCH',
        `FileHash ${info.fileHash} does not match the uploaded file (${nar.fileHash})`,
      );
    }
    if (info.fileSize !== undefined && info.fileSize !== nar.fileSize) {
      throw new NarhubError(
        'FILE_SIZE_MISMATCH',
        `FileSize ${info.fileSize} does not match the uploaded file (${nar.fileSize})`,
      );
    }
    if (info.compression !== nar.compression) {
      throw new NarhubError(
        'COMPRESSION_MISMATCH',
        `Compression ${info.compression} does not match the uploaded file, which is ${nar.compression}`,
      );
    }
  }

  function checkReferences(cache: CacheRow, info: NarInfo, selfBasename: string): void {
    for (const ref of info.references) {
      if (ref === selfBasename) continue;
      const parsed = parseStorePathBasename(ref);
      const present = paths.get(cache.id, parsed.hashPart);
      if (!present || present.name !== parsed.name) {
        throw new NarhubError('REFERENCE_MISSING', `reference ${ref} is not in cache ${cache.name}; upload it first`);
      }
    }
  }

  async function addSignatures(
    cache: CacheRow,
    existing: PathRow,
    info: NarInfo,
    policy = true,
  ): Promise<CommitResult> {
    const stored = parseNarInfo(existing.narinfo);
    if (!sameContent(stored, info)) {
      throw new NarhubError(
        'PATH_CONTENT_CONFLICT',
        `${info.storePath} is already in cache ${cache.name} with different content; ` +
          'narinfo PUTs may only add signatures',
      );
    }
    // A content address is a claim about the content too, though no signature covers it. (Deriver
    // and System may differ and are ignored: one output path can come from several derivations.)
    if ((stored.ca ?? '') !== (info.ca ?? '')) {
      throw new NarhubError(
        'PATH_CONTENT_CONFLICT',
        `${info.storePath} is already in cache ${cache.name} with ` +
          `${stored.ca === undefined ? 'no CA' : `CA ${stored.ca}`}; narinfo PUTs may only add signatures`,
      );
    }
    // Signatures cover the fingerprint, which is the same for both, so checking against the
    // new text is checking against the stored content.
    checkSignatures(cache, info, stored.sigs, policy);
    // Uploading a path again is an access (GC's retention and quota).
    access.path(cache.id, existing.hashPart);
    const added = withoutRetired(cache, info.sigs).filter((s) => !stored.sigs.includes(s));
    if (added.length === 0) return { created: false, narinfo: existing.narinfo, narId: existing.narId };
    const merged: NarInfo = { ...stored, sigs: [...stored.sigs, ...added].sort() };
    const text = formatNarInfo(merged);
    await store.put(narInfoStorageKey(cache.name, existing.hashPart), Buffer.from(text), {
      contentType: 'text/x-nix-narinfo',
    });
    paths.addSignatures(existing.id, added, text);
    return { created: false, narinfo: text, narId: existing.narId };
  }

  // narinfo PUTs for one path are applied one at a time, each seeing what the previous one
  // committed: otherwise concurrent signers overwrite each other's signatures (read, merge,
  // write), and a losing first upload overwrites the winner's narinfo file in the store.
  const pathLock = createKeyedLock();

  function placement(info: NarInfo, hashPart: string): StorePath {
    const storePath = parseStorePath(info.storePath);
    if (storePath.hashPart !== hashPart) {
      throw new NarhubError('NARINFO_INVALID', `StorePath ${info.storePath} does not belong at ${hashPart}.narinfo`);
    }
    if (info.deriver !== undefined) parseStorePathBasename(info.deriver);
    return storePath;
  }

  /**
   * The narinfo narhub serves for a path: built from the verified facts of its NAR file, with the
   * given signatures (less retired keys') and the cache's own. A commit writes exactly this; an
   * upstream's path is offered with it before its NAR is here (`upstream/pull-through.ts`), so
   * both read alike.
   */
  function render(cache: CacheRow, info: NarInfo, nar: NarFacts): { info: NarInfo; text: string } {
    const normalised: NarInfo = {
      storePath: info.storePath,
      url: `nar/${nar.fileName}`,
      compression: nar.compression,
      fileHash: nar.fileHash,
      fileSize: nar.fileSize,
      narHash: nar.narHash,
      narSize: nar.narSize,
      references: [...new Set(info.references)].sort(),
      deriver: info.deriver,
      system: info.system,
      sigs: [],
      ca: info.ca,
    };
    const ownSigs = registry.signingKeys(cache).map((key) => signNarInfo(key, normalised));
    normalised.sigs = [...new Set([...withoutRetired(cache, info.sigs), ...ownSigs])].sort();
    return { info: normalised, text: formatNarInfo(normalised) };
  }

  /** `info.url` names the NAR file, as uploaded to this cache (`nar/<file>`). */
  async function commit(cache: CacheRow, hashPart: string, info: NarInfo, opts: CommitOptions): Promise<CommitResult> {
    const storePath = placement(info, hashPart);
    const policy = opts.fromUpstream !== true;

    const existing = paths.get(cache.id, hashPart);
    if (existing) return addSignatures(cache, existing, info, policy);

    const fileName = narFileOfUrl(info.url);
    if (fileName === undefined)
      throw new NarhubError(
        'NARINFO_INVALID',
        `URL ${JSON.stringify(info.url)} must be nar/<file> as uploaded to this cache`,
      );
    const nar = nars.get(cache.id, fileName);
    if (!nar) throw new NarhubError('NAR_NOT_UPLOADED', `URL ${info.url} names no NAR uploaded to cache ${cache.name}`);
    checkAgainstNar(info, nar);
    const claim = claimedContentAddress(info);
    checkReferences(cache, info, storePath.basename);
    checkSignatures(cache, info, [], policy);
    if (claim !== undefined) {
      const computed =
        claim.needs === undefined ? undefined : (opts.contentHash ?? (await hashStoredNar(store, nar, claim.needs)));
      checkContentHash(claim, nar.narHash, computed);
    }

    const { info: normalised, text: narinfo } = render(cache, info, nar);

    // The file in the store first: a crash before the database commit leaves a verified,
    // signed narinfo that `reindex` can recover, never a visible path without one. A small NAR
    // may still be on its way to the disk (`nar-sync.ts`): the narinfo's write waits beside it,
    // and nothing is committed before both are durable. One this process did not write is
    // verified before any narinfo names it.
    const narDurable = narSync.settle(nar);
    if (!narSync.known(nar)) await narDurable;
    const narinfoKey = narInfoStorageKey(cache.name, hashPart);
    const [written, synced] = await Promise.allSettled([
      store.put(narinfoKey, Buffer.from(narinfo), { contentType: 'text/x-nix-narinfo' }),
      narDurable,
    ]);
    if (synced.status === 'rejected') {
      if (written.status === 'fulfilled') await store.delete(narinfoKey).catch(() => undefined);
      throw synced.reason;
    }
    if (written.status === 'rejected') throw written.reason;

    const commitPath = db.transaction((): CommitResult | 'raced' => {
      if (paths.get(cache.id, hashPart)) return 'raced';
      const current = nars.get(cache.id, fileName);
      if (!current || current.narHash !== nar.narHash) {
        throw new NarhubError('NAR_NOT_UPLOADED', `URL ${info.url} names no NAR uploaded to cache ${cache.name}`);
      }
      // Held since the commit began, so GC cannot have removed them; checked again in the
      // transaction that makes the path visible, which is what the closure invariant rests on.
      checkReferences(cache, info, storePath.basename);
      paths.insert({
        cacheId: cache.id,
        hashPart,
        name: storePath.name,
        narId: current.id,
        deriver: info.deriver ?? null,
        ca: info.ca ?? null,
        system: info.system ?? null,
        narinfo,
        references: normalised.references,
        sigs: normalised.sigs,
      });
      nars.markValid(current.id);
      if (current.listingKey) {
        files.upsert('listing', cache.id, hashPart, {
          storageKey: current.listingKey,
          size: 0,
          contentType: 'application/json',
          contentEncoding: null,
        });
      }
      return { created: true, narinfo, narId: current.id };
    });
    // IMMEDIATE: it reads before it writes, and a deferred transaction whose snapshot another
    // process (an admin command, another narhub) wrote past fails at once with
    // SQLITE_BUSY_SNAPSHOT instead of waiting for the busy timeout.
    const outcome = commitPath.immediate();
    if (outcome === 'raced') {
      // Another writer (another process) committed the path first, and our file may have
      // replaced its file: whether or not this PUT may add signatures, the store must end up
      // holding what the database serves.
      try {
        return await addSignatures(cache, paths.get(cache.id, hashPart)!, info, policy);
      } finally {
        const committed = paths.narinfo(cache.id, hashPart)!;
        await store.put(narInfoStorageKey(cache.name, hashPart), Buffer.from(committed), {
          contentType: 'text/x-nix-narinfo',
        });
      }
    }
    return outcome;
  }

  async function held(cache: CacheRow, hashPart: string, info: NarInfo, opts: CommitOptions): Promise<CommitResult> {
    placement(info, hashPart);
    const release = hold(cache, hashPart, info);
    try {
      return await commit(cache, hashPart, info, opts);
    } finally {
      release();
    }
  }

  return {
    render,
    /**
     * That a narinfo's claims (NarHash, NarSize, and FileHash, FileSize, Compression when given)
     * are what narhub computed for the NAR file it names; throws the mismatch otherwise.
     */
    checkAgainstNar,
    /** A narinfo PUT of the Nix protocol. */
    async commitNarInfo(cache: CacheRow, hashPart: string, text: string): Promise<CommitResult> {
      const info = parseNarInfo(text);
      return pathLock.run(`${cache.id}/${hashPart}`, () => held(cache, hashPart, info, {}));
    },
    /** The same commit, for a NarInfo built by narhub itself (native uploads, pull-through). */
    commitInfo(cache: CacheRow, hashPart: string, info: NarInfo, opts: CommitOptions = {}): Promise<CommitResult> {
      return pathLock.run(`${cache.id}/${hashPart}`, () => held(cache, hashPart, info, opts));
    },
    /** Holds the path and its references against GC until the returned release is called. */
    hold,
    /**
     * The checks that need no NAR (placement, deriver, the store path its CA gives, references
     * present, signatures), so an upload bound to fail is refused before its body is read. The
     * commit runs them again. Returns the content address claimed, if any.
     */
    precheck(cache: CacheRow, hashPart: string, info: NarInfo, options: { referencesLater?: boolean } = {}) {
      const storePath = placement(info, hashPart);
      if (paths.get(cache.id, hashPart)) return undefined;
      const claim = claimedContentAddress(info);
      // Later: the caller brings the missing ones (from upstreams) before the commit checks them.
      if (options.referencesLater !== true) checkReferences(cache, info, storePath.basename);
      checkSignatures(cache, info);
      return claim;
    },
    /**
     * Runs `work` while no commit of these paths runs, e.g. to point them at another NAR file
     * without a concurrent signature merge writing back the old text.
     */
    exclusive<T>(cache: CacheRow, hashParts: string[], work: () => Promise<T>): Promise<T> {
      const keys = [...new Set(hashParts)].sort().map((h) => `${cache.id}/${h}`);
      const from = (i: number): Promise<T> => (i === keys.length ? work() : pathLock.run(keys[i]!, () => from(i + 1)));
      return from(0);
    },
  };
}

export type PathCommit = ReturnType<typeof createPathCommit>;
