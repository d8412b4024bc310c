import type { Database } from 'better-sqlite3';

export type EvaluationStatus = 'pending' | 'evaluating' | 'building' | 'succeeded' | 'failed' | 'cancelled';
/** What started an evaluation. */
export type EvaluationTrigger = 'manual' | 'push' | 'pull_request' | 'poll' | 'trigger' | 'approval';

/** Where an evaluation belongs: its jobset (a branch, `pr-N`, or null for a bare commit), commit and trigger. */
export interface EvaluationOrigin {
  jobset: string | null;
  commitSha: string | null;
  trigger: EvaluationTrigger;
  prNumber: number | null;
  triggeredBy: string | null;
}

export interface EvaluationRow extends EvaluationOrigin {
  id: number;
  projectId: number;
  ref: string | null;
  flakeUrl: string;
  lockedUrl: string | null;
  revision: string | null;
  status: EvaluationStatus;
  priority: number;
  error: string | null;
  supersededBy: number | null;
  createdAt: number;
  startedAt: number | null;
  evaluatedAt: number | null;
  finishedAt: number | null;
}

export interface EvalJobRow {
  evalId: number;
  attr: string;
  system: string | null;
  drvPath: string | null;
  drvHash: string | null;
  outputs: Record<string, string> | null;
  error: string | null;
}

interface RawEvaluation {
  id: number;
  project_id: number;
  ref: string | null;
  flake_url: string;
  locked_url: string | null;
  revision: string | null;
  status: EvaluationStatus;
  priority: number;
  error: string | null;
  superseded_by: number | null;
  created_at: number;
  started_at: number | null;
  evaluated_at: number | null;
  finished_at: number | null;
  jobset: string | null;
  commit_sha: string | null;
  trigger: EvaluationTrigger;
  pr_number: number | null;
  triggered_by: string | null;
}
interface RawJob {
  eval_id: number;
  attr: string;
  system: string | null;
  drv_path: string | null;
  drv_hash: string | null;
  outputs: string | null;
  error: string | null;
}

const toEvaluation = (r: RawEvaluation): EvaluationRow => ({
  id: r.id,
  projectId: r.project_id,
  ref: r.ref,
  flakeUrl: r.flake_url,
  lockedUrl: r.locked_url,
  revision: r.revision,
  status: r.status,
  priority: r.priority,
  error: r.error,
  supersededBy: r.superseded_by,
  createdAt: r.created_at,
  startedAt: r.started_at,
  evaluatedAt: r.evaluated_at,
  finishedAt: r.finished_at,
  jobset: r.jobset,
  commitSha: r.commit_sha,
  trigger: r.trigger,
  prNumber: r.pr_number,
  triggeredBy: r.triggered_by,
});
const toJob = (r: RawJob): EvalJobRow => ({
  evalId: r.eval_id,
  attr: r.attr,
  system: r.system,
  drvPath: r.drv_path,
  drvHash: r.drv_hash,
  outputs: r.outputs === null ? null : (JSON.parse(r.outputs) as Record<string, string>),
  error: r.error,
});

/** Evaluations, the job (attribute) rows they produced, and the builds each one needs. */
export function createEvaluationsRepo(db: Database) {
  const insert = db.prepare(`
    INSERT INTO evaluations (project_id, ref, flake_url, status, priority, created_at, jobset, commit_sha, trigger,
      pr_number, triggered_by)
    VALUES (@projectId, @ref, @flakeUrl, 'pending', @priority, @now, @jobset, @commitSha, @trigger,
      @prNumber, @triggeredBy)`);
  const byId = db.prepare<[number], RawEvaluation>('SELECT * FROM evaluations WHERE id = ?');
  const ofProject = db.prepare<[number, number], RawEvaluation>(
    'SELECT * FROM evaluations WHERE project_id = ? ORDER BY id DESC LIMIT ?',
  );
  const live = db.prepare<[], RawEvaluation>(
    `SELECT * FROM evaluations WHERE status IN ('pending', 'evaluating', 'building') ORDER BY id`,
  );
  const liveOfJobset = db.prepare<[number, string], RawEvaluation>(`SELECT * FROM evaluations
    WHERE project_id = ? AND jobset = ? AND status IN ('pending', 'evaluating', 'building') ORDER BY id`);
  const setStatus = db.prepare('UPDATE evaluations SET status = ? WHERE id = ?');
  const start = db.prepare(`
    UPDATE evaluations SET status = 'evaluating', started_at = ?, error = NULL, locked_url = NULL, revision = NULL,
      evaluated_at = NULL, finished_at = NULL
    WHERE id = ?`);
  const locked = db.prepare('UPDATE evaluations SET locked_url = ?, revision = ? WHERE id = ?');
  // Guarded: an evaluation cancelled while it evaluated (its pull request closed) stays cancelled.
  const evaluated = db.prepare(
    `UPDATE evaluations SET status = 'building', evaluated_at = ? WHERE id = ? AND status = 'evaluating'`,
  );
  const finish = db.prepare(
    'UPDATE evaluations SET status = ?, error = COALESCE(?, error), finished_at = ? WHERE id = ?',
  );
  const supersede = db.prepare('UPDATE evaluations SET superseded_by = ? WHERE id = ? AND superseded_by IS NULL');
  const olderLive = db.prepare<[number, string | null, number], RawEvaluation>(`SELECT * FROM evaluations
    WHERE project_id = ? AND jobset = ? AND id < ? AND status IN ('pending', 'evaluating', 'building')
      AND superseded_by IS NULL
    ORDER BY id`);
  const clearJobs = db.prepare<[number]>('DELETE FROM eval_jobs WHERE eval_id = ?');
  const clearBuilds = db.prepare<[number]>('DELETE FROM eval_builds WHERE eval_id = ?');
  const insertJob =
    db.prepare(`INSERT OR REPLACE INTO eval_jobs (eval_id, attr, system, drv_path, drv_hash, outputs, error)
    VALUES (@evalId, @attr, @system, @drvPath, @drvHash, @outputs, @error)`);
  const jobsOf = db.prepare<[number], RawJob>('SELECT * FROM eval_jobs WHERE eval_id = ? ORDER BY attr');
  const anyJobError = db.prepare<[number], { one: number }>(
    'SELECT 1 AS one FROM eval_jobs WHERE eval_id = ? AND error IS NOT NULL LIMIT 1',
  );
  const linkBuild = db.prepare('INSERT OR IGNORE INTO eval_builds (eval_id, drv_hash) VALUES (?, ?)');
  const buildsOf = db.prepare<[number], { drv_hash: string }>('SELECT drv_hash FROM eval_builds WHERE eval_id = ?');
  const liveNeeding = db.prepare<
    [string],
    { eval_id: number }
  >(`SELECT eb.eval_id FROM eval_builds eb JOIN evaluations e ON e.id = eb.eval_id
    WHERE eb.drv_hash = ? AND e.status IN ('pending', 'evaluating', 'building')`);
  const keptNeeding = db.prepare<
    [string],
    { eval_id: number }
  >(`SELECT eb.eval_id FROM eval_builds eb JOIN evaluations e ON e.id = eb.eval_id
    WHERE eb.drv_hash = ? AND e.status IN ('pending', 'evaluating', 'building') AND e.superseded_by IS NULL`);
  const finishedNeeding = db.prepare<
    [string],
    { eval_id: number }
  >(`SELECT eb.eval_id FROM eval_builds eb JOIN evaluations e ON e.id = eb.eval_id
    WHERE eb.drv_hash = ? AND e.status IN ('failed', 'cancelled')`);
  const reopen = db.prepare(
    `UPDATE evaluations SET status = 'building', finished_at = NULL WHERE id = ? AND status IN ('failed', 'cancelled')`,
  );
  // Walks the (few) open builds and stops at the first of this evaluation's: cheap whether the
  // evaluation has thousands of builds or none open, unlike counting them all.
  const anyOpen = db.prepare<
    [number],
    { one: number }
  >(`SELECT 1 AS one FROM builds b WHERE b.status IN ('queued', 'running')
    AND EXISTS (SELECT 1 FROM eval_builds eb WHERE eb.drv_hash = b.drv_hash AND eb.eval_id = ?) LIMIT 1`);
  const counts = db.prepare<[number], { status: string; n: number }>(`SELECT b.status, count(*) AS n FROM eval_builds eb
    JOIN builds b ON b.drv_hash = eb.drv_hash WHERE eb.eval_id = ? GROUP BY b.status`);

  return {
    insert(
      e: { projectId: number; ref: string | null; flakeUrl: string; priority: number } & Partial<EvaluationOrigin>,
    ): EvaluationRow {
      const origin: EvaluationOrigin = {
        jobset: e.jobset ?? null,
        commitSha: e.commitSha ?? null,
        trigger: e.trigger ?? 'manual',
        prNumber: e.prNumber ?? null,
        triggeredBy: e.triggeredBy ?? null,
      };
      const id = Number(insert.run({ ...e, ...origin, now: Date.now() }).lastInsertRowid);
      return toEvaluation(byId.get(id)!);
    },
    get(id: number): EvaluationRow | undefined {
      const r = byId.get(id);
      return r && toEvaluation(r);
    },
    ofProject(projectId: number, limit = 50): EvaluationRow[] {
      return ofProject.all(projectId, limit).map(toEvaluation);
    },
    live(): EvaluationRow[] {
      return live.all().map(toEvaluation);
    },
    liveOfJobset(projectId: number, jobset: string): EvaluationRow[] {
      return liveOfJobset.all(projectId, jobset).map(toEvaluation);
    },
    /** Starts (or restarts, after a hub restart) an evaluation from scratch. */
    start(id: number): void {
      db.transaction(() => {
        clearJobs.run(id);
        clearBuilds.run(id);
        start.run(Date.now(), id);
      })();
    },
    setStatus(id: number, status: EvaluationStatus): void {
      setStatus.run(status, id);
    },
    setLocked(id: number, lockedUrl: string, revision: string | null): void {
      locked.run(lockedUrl, revision, id);
    },
    setEvaluated(id: number): void {
      evaluated.run(Date.now(), id);
    },
    finish(id: number, status: 'succeeded' | 'failed' | 'cancelled', error?: string): void {
      finish.run(status, error ?? null, Date.now(), id);
    },
    supersede(id: number, by: number): void {
      supersede.run(by, id);
    },
    /** Live evaluations of the same project and jobset older than `id`, not yet superseded (none for a bare commit). */
    olderLive(projectId: number, jobset: string | null, id: number): EvaluationRow[] {
      return jobset === null ? [] : olderLive.all(projectId, jobset, id).map(toEvaluation);
    },
    insertJob(job: EvalJobRow): void {
      insertJob.run({ ...job, outputs: job.outputs === null ? null : JSON.stringify(job.outputs) });
    },
    jobs(evalId: number): EvalJobRow[] {
      return jobsOf.all(evalId).map(toJob);
    },
    /** Whether any job of the evaluation failed to evaluate (without reading them all). */
    hasJobErrors(evalId: number): boolean {
      return anyJobError.get(evalId) !== undefined;
    },
    linkBuild(evalId: number, drvHash: string): void {
      linkBuild.run(evalId, drvHash);
    },
    builds(evalId: number): string[] {
      return buildsOf.all(evalId).map((r) => r.drv_hash);
    },
    /** Ids of live evaluations that need this build. */
    liveNeeding(drvHash: string): number[] {
      return liveNeeding.all(drvHash).map((r) => r.eval_id);
    },
    /** Ids of live evaluations, not superseded by a newer one, that need this build. */
    keptNeeding(drvHash: string): number[] {
      return keptNeeding.all(drvHash).map((r) => r.eval_id);
    },
    /** Ids of evaluations that ended failed or cancelled and need this build (reopened when it is restarted). */
    finishedNeeding(drvHash: string): number[] {
      return finishedNeeding.all(drvHash).map((r) => r.eval_id);
    },
    reopen(evalId: number): void {
      reopen.run(evalId);
    },
    /** Whether any build of the evaluation is queued or running. */
    hasOpenBuilds(evalId: number): boolean {
      return anyOpen.get(evalId) !== undefined;
    },
    buildCounts(evalId: number): Record<string, number> {
      return Object.fromEntries(counts.all(evalId).map((r) => [r.status, r.n]));
    },
  };
}

export type EvaluationsRepo = ReturnType<typeof createEvaluationsRepo>;
