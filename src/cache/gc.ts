import type { Database } from 'better-sqlite3';
import type { CacheRow } from '../db/caches-repo.js';
import type { GcRepo, KeptBecause, RemovedPath } from '../db/gc-repo.js';
import type { NarsRepo } from '../db/nars-repo.js';
import { mapLimit } from '../io/map-limit.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { AccessLog } from './access-log.js';
import { type GcGraph, planCollection } from './gc-plan.js';
import type { KeyedLock } from '../io/keyed-lock.js';
import { narInfoStorageKey } from './narinfo-commit.js';

/** Paths removed per write transaction: short enough that uploads' commits wait little. */
const REMOVE_BATCH = 256;
/** Blob deletions in flight at once (S3 round trips). */
const DELETE_CONCURRENCY = 8;

export interface GcOptions {
  dryRun?: boolean;
  /** How long a blob no row describes is left alone (an upload writes its blob before its row). */
  orphanGraceMs: number;
}

export interface GcReport {
  cache: string;
  dryRun: boolean;
  startedAt: string;
  retention: number | null;
  quota: number | null;
  /** The paths removed (or, dry, that would be), with the bytes of NAR file each freed. */
  paths: { storePath: string; bytes: number }[];
  pathsRemoved: number;
  bytesFreed: number;
  /** NAR bytes the cache's paths point at, before and after. */
  bytesBefore: number;
  bytesAfter: number;
  /** Planned paths found, at removal time, to be needed after all (a new referrer, an access, a hold, a pin). */
  kept: Record<KeptBecause, number>;
  logsRemoved: number;
  /** Blobs no row describes: found now, and removed because their grace period had passed. */
  orphansFound: number;
  orphansRemoved: number;
}

/** The cache's graph in compact arrays, with what GC needs to name each path again. */
interface LoadedGraph {
  graph: GcGraph;
  ids: Int32Array;
  hashParts: string[];
  names: string[];
}

/**
 * Garbage collection of one cache: plan over the whole graph (`gc-plan.ts`), then remove in
 * batches, each path in a write transaction that checks again that it may still go (see
 * "Garbage collection" in docs/architecture.md for the ordering against uploads), and only then
 * delete its blobs. Orphaned blobs and the logs of removed outputs go too.
 */
export function createGarbageCollector(deps: {
  db: Database;
  store: BlobStore;
  gc: GcRepo;
  nars: NarsRepo;
  access: AccessLog;
  lock: KeyedLock;
  /** Drops narinfos held in memory (`narinfo-memo.ts`): called after removals, before their blobs go. */
  forgetNarinfos: () => void;
  now?: () => number;
}) {
  const { db, store, gc, nars, access, lock, forgetNarinfos } = deps;
  const now = deps.now ?? Date.now;

  function load(cache: CacheRow, at: number): LoadedGraph {
    const ids: number[] = [];
    const hashParts: string[] = [];
    const names: string[] = [];
    const accessed: number[] = [];
    const narOf: number[] = [];
    const narIndex = new Map<number, number>();
    const narSizes: number[] = [];
    const index = new Map<number, number>();
    for (const p of gc.paths(cache.id)) {
      index.set(p.id, ids.length);
      ids.push(p.id);
      hashParts.push(p.hashPart);
      names.push(p.name);
      accessed.push(p.accessedAt);
      let k = narIndex.get(p.narId);
      if (k === undefined) {
        k = narSizes.length;
        narIndex.set(p.narId, k);
        narSizes.push(p.fileSize);
      }
      narOf.push(k);
    }
    const n = ids.length;
    const from: number[] = [];
    const to: number[] = [];
    for (const [a, b] of gc.edges(cache.id)) {
      const i = index.get(a);
      const j = index.get(b);
      if (i === undefined || j === undefined) continue;
      from.push(i);
      to.push(j);
    }
    const refStart = new Int32Array(n + 1);
    for (const i of from) refStart[i + 1]!++;
    for (let i = 0; i < n; i++) refStart[i + 1]! += refStart[i]!;
    const fill = refStart.slice(0, n);
    const refs = new Int32Array(from.length);
    for (let e = 0; e < from.length; e++) refs[fill[from[e]!]!++] = to[e]!;

    const byHash = new Map<string, number>();
    for (let i = 0; i < n; i++) byHash.set(hashParts[i]!, i);
    const roots: number[] = [];
    for (const basename of gc.pinnedBasenames(cache.id, at)) {
      const i = byHash.get(basename.slice(0, 32));
      if (i !== undefined && names[i] === basename.slice(33)) roots.push(i);
    }
    for (const h of gc.heldHashParts(cache.id, at)) {
      const i = byHash.get(h);
      if (i !== undefined) roots.push(i);
    }
    return {
      graph: {
        accessedAt: Float64Array.from(accessed),
        narIndex: Int32Array.from(narOf),
        narSize: Float64Array.from(narSizes),
        refStart,
        refs,
        roots,
      },
      ids: Int32Array.from(ids),
      hashParts,
      names,
    };
  }

  async function deleteBlobs(cache: CacheRow, removed: RemovedPath[]): Promise<void> {
    await mapLimit(removed, DELETE_CONCURRENCY, async (r) => {
      await store.delete(narInfoStorageKey(cache.name, r.hashPart));
      if (r.clientListingKey) await store.delete(r.clientListingKey);
      const nar = r.nar;
      if (nar === null) return;
      // Under the NAR's lock, which uploads of the same file name take too: an upload that
      // registered the name again meanwhile keeps its bytes.
      await lock.run(`${cache.id}/${nar.fileName}`, async () => {
        if (nars.get(cache.id, nar.fileName) !== undefined) return;
        await store.delete(nar.storageKey);
        if (nar.listingKey) await store.delete(nar.listingKey);
      });
    });
  }

  async function sweepOrphans(cache: CacheRow, report: GcReport, graceMs: number): Promise<void> {
    const seen = new Set<string>();
    const at = now();
    for await (const key of store.list(`${cache.name}/`)) {
      if (gc.describes(cache.id, cache.name, key)) continue;
      report.orphansFound++;
      if (report.dryRun) continue;
      seen.add(key);
      if (at - gc.orphanSince(key, cache.id, at) < graceMs) continue;
      const nar = /\/nar\/([^/]+)$/.exec(key)?.[1];
      await lock.run(nar === undefined ? `orphan:${key}` : `${cache.id}/${nar}`, async () => {
        if (gc.describes(cache.id, cache.name, key)) return;
        await store.delete(key);
        report.orphansRemoved++;
      });
      gc.forgetOrphan(key);
    }
    // Candidates described again, or gone from storage, are candidates no more.
    if (!report.dryRun) for (const key of gc.orphanCandidates(cache.id)) if (!seen.has(key)) gc.forgetOrphan(key);
  }

  return async function collect(cache: CacheRow, options: GcOptions): Promise<GcReport> {
    const dryRun = options.dryRun ?? false;
    const startedAt = now();
    access.flush();
    gc.dropExpiredHolds(startedAt);
    const loaded = load(cache, startedAt);
    const plan = planCollection(loaded.graph, {
      now: startedAt,
      retentionMs: cache.retention === null ? undefined : cache.retention * 1000,
      quotaBytes: cache.quota ?? undefined,
    });
    const report: GcReport = {
      cache: cache.name,
      dryRun,
      startedAt: new Date(startedAt).toISOString(),
      retention: cache.retention,
      quota: cache.quota,
      paths: [],
      pathsRemoved: 0,
      bytesFreed: 0,
      bytesBefore: plan.bytesBefore,
      bytesAfter: plan.bytesBefore,
      kept: { gone: 0, accessed: 0, referenced: 0, held: 0, pinned: 0 },
      logsRemoved: 0,
      orphansFound: 0,
      orphansRemoved: 0,
    };
    const storePath = (i: number) => `/nix/store/${loaded.hashParts[i]}-${loaded.names[i]}`;

    if (dryRun) {
      const users = new Map<number, number>();
      for (const i of plan.order) users.set(loaded.graph.narIndex[i]!, (users.get(loaded.graph.narIndex[i]!) ?? 0) + 1);
      for (const i of plan.order) {
        const k = loaded.graph.narIndex[i]!;
        // A NAR file is freed with the last of its paths; the others free nothing.
        const last = users.set(k, users.get(k)! - 1).get(k) === 0;
        report.paths.push({ storePath: storePath(i), bytes: last ? loaded.graph.narSize[k]! : 0 });
      }
      report.pathsRemoved = report.paths.length;
      report.bytesFreed = plan.bytesBefore - plan.bytesAfter;
      report.bytesAfter = plan.bytesAfter;
      await sweepOrphans(cache, report, options.orphanGraceMs);
      return report;
    }

    const derivers = new Set<string>();
    for (let b = 0; b < plan.order.length; b += REMOVE_BATCH) {
      const batch = plan.order.subarray(b, b + REMOVE_BATCH);
      // Reads recorded in this process count until the last moment.
      access.flush();
      const at = now();
      const removeBatch = db.transaction(() => {
        const out: RemovedPath[] = [];
        for (const i of batch) {
          const r = gc.removePath(loaded.ids[i]!, loaded.graph.accessedAt[i]!, cache.name, at);
          if ('kept' in r) report.kept[r.kept]++;
          else out.push(r.removed);
        }
        return out;
      });
      // IMMEDIATE, as a commit's: each removal reads before it writes (see narinfo-commit.ts).
      const removed = removeBatch.immediate();
      if (removed.length > 0) forgetNarinfos();
      for (const r of removed) {
        const bytes = r.nar?.fileSize ?? 0;
        report.paths.push({ storePath: `/nix/store/${r.hashPart}-${r.name}`, bytes });
        report.bytesFreed += bytes;
        if (r.deriver) derivers.add(r.deriver);
      }
      await deleteBlobs(cache, removed);
    }
    report.pathsRemoved = report.paths.length;
    report.bytesAfter = plan.bytesBefore - report.bytesFreed;

    // A build log goes with the last visible output of its derivation.
    for (const drv of derivers) {
      const key = gc.removeOrphanLog(cache.id, drv);
      if (key === undefined) continue;
      await store.delete(key);
      report.logsRemoved++;
    }
    await sweepOrphans(cache, report, options.orphanGraceMs);
    gc.recordRun({
      cacheId: cache.id,
      startedAt,
      finishedAt: now(),
      pathsRemoved: report.pathsRemoved,
      bytesFreed: report.bytesFreed,
      filesRemoved: report.orphansRemoved + report.logsRemoved,
    });
    return report;
  };
}
