import type { Database } from 'better-sqlite3';

export type BuildStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'dependency-failed' | 'cancelled';
export type FailureKind = 'build' | 'timeout' | 'infrastructure' | 'cancelled';

export interface BuildRow {
  drvHash: string;
  /** Basename of the .drv. */
  drvPath: string;
  system: string;
  requiredFeatures: string[];
  /** Output name -> basename. */
  outputs: Record<string, string>;
  queue: string;
  cacheId: number;
  cacheName: string;
  status: BuildStatus;
  /** A BullMQ job exists (or is being added) for the current attempt. */
  enqueued: boolean;
  priority: number;
  attempt: number;
  spoke: string | null;
  failureKind: FailureKind | null;
  error: string | null;
  failedDep: string | null;
  logPath: string | null;
  progress: unknown;
  createdAt: number;
  enqueuedAt: number | null;
  startedAt: number | null;
  finishedAt: number | null;
  updatedAt: number;
}

/** What a successful build reports: outputs by name (basenames), who built it when, its stored log. */
export interface BuildSuccess {
  outputs: Record<string, string> | null;
  spoke: string | null;
  startedAt: number | null;
  finishedAt: number;
  logPath: string | null;
}

export interface NewBuild {
  drvHash: string;
  drvPath: string;
  system: string;
  requiredFeatures: string[];
  outputs: Record<string, string>;
  queue: string;
  cacheId: number;
  priority: number;
}

interface RawBuild {
  drv_hash: string;
  drv_path: string;
  system: string;
  required_features: string;
  outputs: string;
  queue: string;
  cache_id: number;
  cache_name: string;
  status: BuildStatus;
  enqueued: number;
  priority: number;
  attempt: number;
  spoke: string | null;
  failure_kind: FailureKind | null;
  error: string | null;
  failed_dep: string | null;
  log_path: string | null;
  progress: string | null;
  created_at: number;
  enqueued_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  updated_at: number;
}

const toBuild = (r: RawBuild): BuildRow => ({
  drvHash: r.drv_hash,
  drvPath: r.drv_path,
  system: r.system,
  requiredFeatures: JSON.parse(r.required_features) as string[],
  outputs: JSON.parse(r.outputs) as Record<string, string>,
  queue: r.queue,
  cacheId: r.cache_id,
  cacheName: r.cache_name,
  status: r.status,
  enqueued: r.enqueued === 1,
  priority: r.priority,
  attempt: r.attempt,
  spoke: r.spoke,
  failureKind: r.failure_kind,
  error: r.error,
  failedDep: r.failed_dep,
  logPath: r.log_path,
  progress: r.progress === null ? null : (JSON.parse(r.progress) as unknown),
  createdAt: r.created_at,
  enqueuedAt: r.enqueued_at,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  updatedAt: r.updated_at,
});

const SELECT = 'SELECT b.*, c.name AS cache_name FROM builds b JOIN caches c ON c.id = b.cache_id';

/**
 * Build records, one per derivation, and the dependency edges between them. Every status change
 * names the statuses it may come from, so a late or repeated event cannot move a build backwards;
 * each returns whether it changed anything.
 */
export function createBuildsRepo(db: Database) {
  const byHash = db.prepare<[string], RawBuild>(`${SELECT} WHERE b.drv_hash = ?`);
  const byOutput = db.prepare<[string], RawBuild>(
    `${SELECT} JOIN build_outputs o ON o.drv_hash = b.drv_hash WHERE o.hash_part = ?`,
  );
  // One statement for a whole batch: the hashes travel as one JSON array, each looked up by key.
  const statusAmong = db.prepare<[string], { drv_hash: string; status: BuildStatus; failure_kind: FailureKind | null }>(
    'SELECT drv_hash, status, failure_kind FROM builds WHERE drv_hash IN (SELECT value FROM json_each(?))',
  );
  const unenqueued = db.prepare<[], { drv_hash: string }>(
    `SELECT drv_hash FROM builds WHERE status = 'queued' AND enqueued = 0 ORDER BY created_at`,
  );
  const open = db.prepare<[], RawBuild>(`${SELECT} WHERE b.status IN ('queued', 'running') ORDER BY b.created_at`);
  const listAll = db.prepare<[number], RawBuild>(`${SELECT} ORDER BY b.updated_at DESC LIMIT ?`);
  const listStatus = db.prepare<[string, number], RawBuild>(
    `${SELECT} WHERE b.status = ? ORDER BY b.updated_at DESC LIMIT ?`,
  );
  const insert = db.prepare(`
    INSERT INTO builds (drv_hash, drv_path, system, required_features, outputs, queue, cache_id, status, priority,
      attempt, created_at, updated_at)
    VALUES (@drvHash, @drvPath, @system, @requiredFeatures, @outputs, @queue, @cacheId, 'queued', @priority,
      1, @now, @now)`);
  const insertOutput = db.prepare('INSERT OR IGNORE INTO build_outputs (hash_part, drv_hash, name) VALUES (?, ?, ?)');
  const requeue = db.prepare(`
    UPDATE builds SET status = 'queued', enqueued = 0, attempt = attempt + @bump, cache_id = @cacheId,
      priority = max(priority, @priority), spoke = NULL, failure_kind = NULL, error = NULL, failed_dep = NULL,
      progress = NULL, enqueued_at = NULL, started_at = NULL, finished_at = NULL, updated_at = @now
    WHERE drv_hash = @drvHash`);
  const raisePriority = db.prepare(
    'UPDATE builds SET priority = ?, updated_at = ? WHERE drv_hash = ? AND priority < ?',
  );
  const markEnqueued = db.prepare(`
    UPDATE builds SET enqueued = 1, enqueued_at = ?, updated_at = ?
    WHERE drv_hash = ? AND status = 'queued' AND enqueued = 0`);
  const markUnenqueued = db.prepare(
    `UPDATE builds SET enqueued = 0, updated_at = ? WHERE drv_hash = ? AND status = 'queued'`,
  );
  const markRunning = db.prepare(`
    UPDATE builds SET status = 'running', started_at = coalesce(?, started_at), spoke = coalesce(?, spoke),
      updated_at = ?
    WHERE drv_hash = ? AND attempt = ? AND status IN ('queued', 'running')`);
  const markWaiting = db.prepare(
    `UPDATE builds SET status = 'queued', updated_at = ? WHERE drv_hash = ? AND attempt = ? AND status = 'running'`,
  );
  const succeed = db.prepare(`
    UPDATE builds SET status = 'succeeded', outputs = coalesce(@outputs, outputs), spoke = coalesce(@spoke, spoke),
      started_at = coalesce(@startedAt, started_at), finished_at = @finishedAt, log_path = @logPath,
      failure_kind = NULL, error = NULL, updated_at = @now
    WHERE drv_hash = @drvHash AND attempt = @attempt AND status IN ('queued', 'running', 'cancelled')`);
  const fail = db.prepare(`
    UPDATE builds SET status = @status, failure_kind = @kind, error = @error, spoke = coalesce(@spoke, spoke),
      finished_at = @now, updated_at = @now
    WHERE drv_hash = @drvHash AND attempt = @attempt AND status IN ('queued', 'running', 'cancelled')`);
  const depFail =
    db.prepare(`UPDATE builds SET status = 'dependency-failed', failed_dep = ?, finished_at = ?, updated_at = ?
    WHERE drv_hash = ? AND status = 'queued' AND enqueued = 0`);
  const cancel = db.prepare(`
    UPDATE builds SET status = 'cancelled', failure_kind = 'cancelled', error = ?, finished_at = ?, updated_at = ?
    WHERE drv_hash = ? AND status IN ('queued', 'running')`);
  const setProgress = db.prepare('UPDATE builds SET progress = ?, updated_at = ? WHERE drv_hash = ?');
  const addDep = db.prepare('INSERT OR IGNORE INTO build_deps (drv_hash, input_hash) VALUES (?, ?)');
  const depsOf = db.prepare<
    [string],
    { hash: string; status: BuildStatus }
  >(`SELECT d.input_hash AS hash, b.status FROM build_deps d
    JOIN builds b ON b.drv_hash = d.input_hash WHERE d.drv_hash = ?`);
  const inputsOf = db.prepare<
    [string],
    { drv_path: string; outputs: string }
  >(`SELECT b.drv_path, b.outputs FROM build_deps d
    JOIN builds b ON b.drv_hash = d.input_hash WHERE d.drv_hash = ?`);
  const dependentsOf = db.prepare<
    [string],
    { hash: string; status: BuildStatus; enqueued: number }
  >(`SELECT d.drv_hash AS hash, b.status, b.enqueued
    FROM build_deps d JOIN builds b ON b.drv_hash = d.drv_hash WHERE d.input_hash = ?`);
  const countsByStatus = db.prepare<[], { status: BuildStatus; n: number }>(
    'SELECT status, count(*) AS n FROM builds GROUP BY status',
  );

  return {
    get(drvHash: string): BuildRow | undefined {
      const r = byHash.get(drvHash);
      return r && toBuild(r);
    },
    /** The status (and failure kind) of those of `drvHashes` that have a record, in one query. */
    statusAmong(drvHashes: readonly string[]): Map<string, { status: BuildStatus; failureKind: FailureKind | null }> {
      const found = new Map<string, { status: BuildStatus; failureKind: FailureKind | null }>();
      if (drvHashes.length === 0) return found;
      for (const r of statusAmong.all(JSON.stringify(drvHashes)))
        found.set(r.drv_hash, { status: r.status, failureKind: r.failure_kind });
      return found;
    },
    byOutput(hashPart: string): BuildRow[] {
      return byOutput.all(hashPart).map(toBuild);
    },
    /** Queued builds without a job (waiting on inputs, or their add failed): hashes only, oldest first. */
    unenqueued(): string[] {
      return unenqueued.all().map((r) => r.drv_hash);
    },
    open(): BuildRow[] {
      return open.all().map(toBuild);
    },
    /** How many builds are in each status (statuses no build has are left out). */
    countByStatus(): Record<string, number> {
      return Object.fromEntries(countsByStatus.all().map((r) => [r.status, r.n]));
    },
    list(status: BuildStatus | undefined, limit: number): BuildRow[] {
      return (status ? listStatus.all(status, limit) : listAll.all(limit)).map(toBuild);
    },
    insert(b: NewBuild): void {
      const now = Date.now();
      insert.run({
        ...b,
        requiredFeatures: JSON.stringify(b.requiredFeatures),
        outputs: JSON.stringify(b.outputs),
        now,
      });
      for (const [name, path] of Object.entries(b.outputs)) insertOutput.run(path.slice(0, 32), b.drvHash, name);
    },
    /** Back to queued for a new try (`bump`: count it as a new attempt). */
    requeue(drvHash: string, o: { bump: boolean; cacheId: number; priority: number }): void {
      requeue.run({ drvHash, bump: o.bump ? 1 : 0, cacheId: o.cacheId, priority: o.priority, now: Date.now() });
    },
    raisePriority(drvHash: string, priority: number): boolean {
      return raisePriority.run(priority, Date.now(), drvHash, priority).changes > 0;
    },
    markEnqueued(drvHash: string): boolean {
      const now = Date.now();
      return markEnqueued.run(now, now, drvHash).changes > 0;
    },
    markUnenqueued(drvHash: string): void {
      markUnenqueued.run(Date.now(), drvHash);
    },
    markRunning(drvHash: string, attempt: number, startedAt: number | null, spoke: string | null): boolean {
      return markRunning.run(startedAt, spoke, Date.now(), drvHash, attempt).changes > 0;
    },
    /** A running job went back to waiting (a retry after an infrastructure failure, or a stalled spoke). */
    markWaiting(drvHash: string, attempt: number): boolean {
      return markWaiting.run(Date.now(), drvHash, attempt).changes > 0;
    },
    succeed(drvHash: string, attempt: number, r: BuildSuccess): boolean {
      return (
        succeed.run({ drvHash, attempt, ...r, outputs: r.outputs && JSON.stringify(r.outputs), now: Date.now() })
          .changes > 0
      );
    },
    fail(drvHash: string, attempt: number, r: { kind: FailureKind; error: string; spoke: string | null }): boolean {
      const status: BuildStatus = r.kind === 'cancelled' ? 'cancelled' : 'failed';
      return (
        fail.run({ drvHash, attempt, status, kind: r.kind, error: r.error, spoke: r.spoke, now: Date.now() }).changes >
        0
      );
    },
    dependencyFail(drvHash: string, failedDep: string): boolean {
      const now = Date.now();
      return depFail.run(failedDep, now, now, drvHash).changes > 0;
    },
    cancel(drvHash: string, reason: string): boolean {
      const now = Date.now();
      return cancel.run(reason, now, now, drvHash).changes > 0;
    },
    setProgress(drvHash: string, progress: unknown): void {
      setProgress.run(JSON.stringify(progress), Date.now(), drvHash);
    },
    addDep(drvHash: string, inputHash: string): void {
      addDep.run(drvHash, inputHash);
    },
    deps(drvHash: string): { hash: string; status: BuildStatus }[] {
      return depsOf.all(drvHash);
    },
    /** The input builds of a build: their `.drv` basename and outputs (name -> basename). */
    inputs(drvHash: string): { drvPath: string; outputs: Record<string, string> }[] {
      return inputsOf
        .all(drvHash)
        .map((r) => ({ drvPath: r.drv_path, outputs: JSON.parse(r.outputs) as Record<string, string> }));
    },
    dependents(drvHash: string): { hash: string; status: BuildStatus; enqueued: boolean }[] {
      return dependentsOf.all(drvHash).map((r) => ({ ...r, enqueued: r.enqueued === 1 }));
    },
  };
}

export type BuildsRepo = ReturnType<typeof createBuildsRepo>;
