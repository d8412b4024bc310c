import { pipeline } from 'node:stream/promises';
import type { Database } from 'better-sqlite3';
import { NarhubError, isNarhubError } from '../errors.js';
import { formatHash, hashesEqual, parseHash, sha256Hash } from '../nix/hash.js';
import { formatNarInfo, parseNarInfo } from '../nix/narinfo.js';
import type { Compression } from '../io/compression.js';
import { createNarPass } from '../io/nar-pass.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { NarRow, NarsRepo } from '../db/nars-repo.js';
import type { PathsRepo } from '../db/paths-repo.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { CacheRegistry } from './caches.js';
import type { KeyedLock } from '../io/keyed-lock.js';
import { narHashFileName } from './nar-file-name.js';
import type { ZstdOptions } from './native-upload.js';
import { narStorageKey } from './nar-ingest.js';
import { rejections } from './upload-failure.js';
import { narInfoStorageKey, type PathCommit } from './narinfo-commit.js';

/** Where the recompressor reports; the server passes its logger. */
export interface RecompressLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const RECOMPRESSIBLE = new Set(['xz', 'bzip2']);

/** What recompression works with. */
interface RecompressDeps {
  db: Database;
  store: BlobStore;
  nars: NarsRepo;
  paths: PathsRepo;
  registry: CacheRegistry;
  commit: PathCommit;
  lock: KeyedLock;
  zstd: ZstdOptions;
  now: () => number;
  /** Where it reports, once started. */
  log: () => RecompressLog;
}

/**
 * Background recompression of xz and bzip2 NARs (what stock Nix uploads by default) to zstd,
 * for caches with `recompressToZstd`. One file at a time, from an in-memory queue fed by commits
 * and, at start, by a scan for such files still in use.
 *
 * Per file: the old file is read, decompressed and validated (its NarHash and NarSize must come
 * out exactly as recorded, checked before the new file takes its name), compressed with zstd and
 * hashed on the way, and stored as `nar/<narhash>.nar.zst`. Then, in one transaction, every path
 * pointing at the old file is switched to the new one (URL, Compression, FileHash, FileSize; the
 * signatures stay valid, the fingerprint covers none of these) and the old file is marked
 * superseded. The old file stays valid and served for clients holding the old narinfo, until
 * `sweepSuperseded` removes it after its grace period if no path points at it again.
 */
export function createRecompressor(options: Omit<RecompressDeps, 'now' | 'log'> & { now?: () => number }) {
  const deps: RecompressDeps = { ...options, now: options.now ?? Date.now, log: () => log };
  const { nars, store } = deps;
  const now = deps.now;
  const queue: number[] = [];
  const queued = new Set<number>();
  let started = false;
  let stopping = false;
  let running: Promise<void> | undefined;
  let controller = new AbortController();
  let log: RecompressLog = { info: () => undefined, error: () => undefined };
  const idleWaiters: (() => void)[] = [];

  function enqueue(narId: number): void {
    if (queued.has(narId)) return;
    queued.add(narId);
    queue.push(narId);
    kick();
  }

  function kick(): void {
    if (!started || stopping || running) return;
    running = work().finally(() => {
      running = undefined;
      if (queue.length > 0 && !stopping) kick();
      else for (const resolve of idleWaiters.splice(0)) resolve();
    });
  }

  async function work(): Promise<void> {
    while (queue.length > 0 && !stopping) {
      const narId = queue.shift()!;
      try {
        await recompress(deps, narId, controller.signal, enqueue);
      } catch (err) {
        // Left as it is (still valid, still served); the next start's scan tries again.
        if (!stopping) log.error({ err, narId }, 'recompression failed');
      } finally {
        queued.delete(narId);
      }
    }
  }

  return {
    /** Starts working: queues every recompressible file still in use, then whatever commits add. */
    start(logger?: RecompressLog): void {
      if (logger) log = logger;
      started = true;
      stopping = false;
      controller = new AbortController();
      for (const row of nars.recompressible()) enqueue(row.id);
      kick();
    },
    /** Stops after aborting the file in progress (its temporary write is discarded). */
    async stop(): Promise<void> {
      stopping = true;
      controller.abort(new Error('shutting down'));
      await running;
      started = false;
    },
    /** Called after every commit: queues the path's file if this cache wants it recompressed. */
    committed(cache: CacheRow, narId: number): void {
      if (!cache.recompressToZstd) return;
      const nar = nars.getById(narId);
      if (nar && nar.state === 'valid' && RECOMPRESSIBLE.has(nar.compression)) enqueue(narId);
    },
    /** Resolves once nothing is queued or running (for tests and orderly shutdowns). */
    idle(): Promise<void> {
      if (!running && (queue.length === 0 || !started)) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    pending(): number {
      return queue.length + (running ? 1 : 0);
    },
    /**
     * Removes superseded files older than `graceMs` that no path points at (row first, in a
     * check-and-delete that loses to a commit claiming the file again, then the bytes). Their
     * listings stay: the recompressed file shares them.
     */
    async sweepSuperseded(graceMs: number): Promise<{ removed: number }> {
      let removed = 0;
      for (const row of nars.staleSuperseded(now() - graceMs)) {
        if (!nars.removeSuperseded(row)) continue;
        await store.delete(row.storageKey);
        removed++;
      }
      return { removed };
    },
  };
}

/** Recompresses one file, if it still needs it, and moves its paths to the new one. */
async function recompress(
  deps: RecompressDeps,
  narId: number,
  signal: AbortSignal,
  requeue: (narId: number) => void,
): Promise<void> {
  const { nars, paths, registry, lock, now } = deps;
  const old = nars.getById(narId);
  if (old?.state !== 'valid' || !RECOMPRESSIBLE.has(old.compression)) return;
  const cache = registry.list().find((c) => c.id === old.cacheId);
  if (!cache?.recompressToZstd) return;
  if (paths.byNar(old.id).length === 0) return;
  const fileName = narHashFileName(old.narHash);
  const t0 = now();

  const target = await lock.run(`${cache.id}/${fileName}`, async () => {
    const existing = nars.get(cache.id, fileName);
    if (existing?.state === 'valid') return existing;
    return writeZstd(deps, cache, old, fileName, signal);
  });
  const moved = await switchPaths(deps, cache, old, target, requeue);
  deps.log().info(
    {
      cache: cache.name,
      from: old.fileName,
      to: target.fileName,
      paths: moved,
      fileSize: old.fileSize,
      newFileSize: target.fileSize,
      ms: now() - t0,
    },
    'NAR recompressed to zstd',
  );
}

/** Decodes, validates and zstd-compresses `old` into `nar/<narhash>.nar.zst`, recorded valid. */
async function writeZstd(
  deps: RecompressDeps,
  cache: CacheRow,
  old: NarRow,
  fileName: string,
  signal: AbortSignal,
): Promise<NarRow> {
  const { store, nars, zstd } = deps;
  const read = await store.get(old.storageKey, { signal });
  if (!read) throw new NarhubError('STORAGE_ERROR', `valid NAR ${old.storageKey} is missing from storage`);
  const key = narStorageKey(cache.name, fileName);
  // Decoded on one codec thread, validated and compressed on another; the loop moves the
  // stored file's bytes in and the compressed ones out.
  const { input, pass } = createNarPass({
    listing: false,
    decompress: old.compression as Compression,
    compress: { level: zstd.level, workers: zstd.workers },
  });
  const validated = pass.result();
  const stored = store.put(key, pass, {
    signal,
    contentType: 'application/x-nix-nar',
    beforeCommit: async () => {
      const nar = await validated;
      if (nar.narSize !== old.narSize || !hashesEqual(parseHash(nar.narHash), parseHash(old.narHash))) {
        throw new NarhubError(
          'NAR_HASH_MISMATCH',
          `${old.storageKey} decompresses to ${nar.narHash} (${nar.narSize} bytes), ` +
            `not the recorded ${old.narHash} (${old.narSize} bytes)`,
        );
      }
    },
  });
  stored.catch(() => undefined);
  const decoded = pipeline(read.stream, input, { signal });
  const results = await Promise.allSettled([decoded, validated, stored]);
  const errors = rejections(results);
  if (errors.length > 0)
    throw (
      errors.find((e) => isNarhubError(e) && e.code === 'NAR_HASH_MISMATCH') ?? errors.find(isNarhubError) ?? errors[0]
    );

  return nars.putValid({
    cacheId: cache.id,
    fileName,
    storageKey: key,
    compression: 'zstd',
    fileHash: formatHash(sha256Hash(pass.digest()), 'nix32'),
    fileSize: pass.bytes,
    narHash: old.narHash,
    narSize: old.narSize,
    // Same NAR, same listing.
    listingKey: old.listingKey,
  });
}

/** Points every path still on `old` at `target`, in one transaction; returns how many moved. */
async function switchPaths(
  deps: RecompressDeps,
  cache: CacheRow,
  old: NarRow,
  target: NarRow,
  requeue: (narId: number) => void,
): Promise<number> {
  const { db, store, nars, paths, commit, now } = deps;
  const hashParts = paths.byNar(old.id).map((p) => p.hashPart);
  return commit.exclusive(cache, hashParts, async () => {
    const locked = new Set(hashParts);
    const switched = db.transaction(() => {
      const out: { hashPart: string; narinfo: string }[] = [];
      for (const p of paths.byNar(old.id)) {
        // A path committed after the locks were taken waits for the next round.
        if (!locked.has(p.hashPart)) continue;
        const info = parseNarInfo(p.narinfo);
        const narinfo = formatNarInfo({
          ...info,
          url: `nar/${target.fileName}`,
          compression: target.compression,
          fileHash: target.fileHash,
          fileSize: target.fileSize,
        });
        paths.switchNar(p.id, target.id, narinfo);
        out.push({ hashPart: p.hashPart, narinfo });
      }
      if (paths.byNar(old.id).length === 0) nars.markSuperseded(old.id, now());
      return out;
    })();
    // The database serves from now on; the store's copies follow (as a commit writes them).
    for (const { hashPart, narinfo } of switched) {
      await store.put(narInfoStorageKey(cache.name, hashPart), Buffer.from(narinfo), {
        contentType: 'text/x-nix-narinfo',
      });
    }
    if (paths.byNar(old.id).length > 0) requeue(old.id);
    return switched.length;
  });
}
