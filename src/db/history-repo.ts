import type { Database } from 'better-sqlite3';

/** Who asked for a build: one row per evaluation that needed it (and the attribute, when it was a job's own). */
export interface BuildRequester {
  evalId: number;
  project: string;
  jobset: string | null;
  commit: string | null;
  attr: string | null;
  createdAt: number;
}

/** One attribute in one evaluation: what became of it. */
export interface AttrHistoryRow {
  evalId: number;
  jobset: string | null;
  commit: string | null;
  evalStatus: string;
  createdAt: number;
  drvHash: string | null;
  error: string | null;
  /** The build's status when the evaluation needed a build; null when its outputs were already cached. */
  buildStatus: string | null;
  startedAt: number | null;
  finishedAt: number | null;
  spoke: string | null;
}

export interface BuildFilter {
  project?: number | undefined;
  jobset?: string | undefined;
  attr?: string | undefined;
  spoke?: string | undefined;
  status?: string | undefined;
  limit: number;
}

/**
 * The records a team lead reads: what asked for a build, an attribute's outcome across
 * evaluations, builds filtered by project, branch, attribute and spoke, a jobset's evaluations.
 */
export function createHistoryRepo(db: Database) {
  const requesters = db.prepare<
    [string, number],
    {
      eval_id: number;
      project: string;
      jobset: string | null;
      commit_id: string | null;
      attr: string | null;
      created_at: number;
    }
  >(`SELECT e.id AS eval_id, p.name AS project, e.jobset, coalesce(e.commit_sha, e.revision) AS commit_id,
      (SELECT j.attr FROM eval_jobs j WHERE j.eval_id = e.id AND j.drv_hash = eb.drv_hash
        ORDER BY j.attr LIMIT 1) AS attr,
      e.created_at
    FROM eval_builds eb JOIN evaluations e ON e.id = eb.eval_id JOIN projects p ON p.id = e.project_id
    WHERE eb.drv_hash = ? ORDER BY e.id DESC LIMIT ?`);
  const history = db.prepare<
    [number, string, number],
    {
      eval_id: number;
      jobset: string | null;
      commit_id: string | null;
      eval_status: string;
      created_at: number;
      drv_hash: string | null;
      error: string | null;
      build_status: string | null;
      started_at: number | null;
      finished_at: number | null;
      spoke: string | null;
    }
  >(`SELECT e.id AS eval_id, e.jobset, coalesce(e.commit_sha, e.revision) AS commit_id, e.status AS eval_status,
      e.created_at,
      j.drv_hash, j.error, CASE WHEN eb.drv_hash IS NULL THEN NULL ELSE b.status END AS build_status,
      CASE WHEN eb.drv_hash IS NULL THEN NULL ELSE b.started_at END AS started_at,
      CASE WHEN eb.drv_hash IS NULL THEN NULL ELSE b.finished_at END AS finished_at,
      CASE WHEN eb.drv_hash IS NULL THEN NULL ELSE b.spoke END AS spoke
    FROM eval_jobs j JOIN evaluations e ON e.id = j.eval_id
    LEFT JOIN eval_builds eb ON eb.eval_id = j.eval_id AND eb.drv_hash = j.drv_hash
    LEFT JOIN builds b ON b.drv_hash = j.drv_hash
    WHERE e.project_id = ? AND j.attr = ? ORDER BY e.id DESC LIMIT ?`);
  const jobsetEvals = db.prepare<[number, string, number], { id: number }>(
    'SELECT id FROM evaluations WHERE project_id = ? AND jobset = ? ORDER BY id DESC LIMIT ?',
  );
  const jobsets = db.prepare<[number], { jobset: string; latest: number }>(
    `SELECT jobset, max(id) AS latest FROM evaluations WHERE project_id = ? AND jobset IS NOT NULL
     GROUP BY jobset ORDER BY latest DESC`,
  );

  return {
    requesters(drvHash: string, limit = 50): BuildRequester[] {
      return requesters.all(drvHash, limit).map((r) => ({
        evalId: r.eval_id,
        project: r.project,
        jobset: r.jobset,
        commit: r.commit_id,
        attr: r.attr,
        createdAt: r.created_at,
      }));
    },
    attrHistory(projectId: number, attr: string, limit = 50): AttrHistoryRow[] {
      return history.all(projectId, attr, limit).map((r) => ({
        evalId: r.eval_id,
        jobset: r.jobset,
        commit: r.commit_id,
        evalStatus: r.eval_status,
        createdAt: r.created_at,
        drvHash: r.drv_hash,
        error: r.error,
        buildStatus: r.build_status,
        startedAt: r.started_at,
        finishedAt: r.finished_at,
        spoke: r.spoke,
      }));
    },
    /** Ids of a jobset's evaluations, newest first. */
    evaluationsOfJobset(projectId: number, jobset: string, limit: number): number[] {
      return jobsetEvals.all(projectId, jobset, limit).map((r) => r.id);
    },
    /** A project's jobsets with their latest evaluation, most recently evaluated first. */
    jobsets(projectId: number): { jobset: string; latest: number }[] {
      return jobsets.all(projectId);
    },
    /** Drv hashes of builds matching every given filter, most recently changed first. */
    filterBuilds(f: BuildFilter): string[] {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (f.status !== undefined) {
        where.push('b.status = ?');
        args.push(f.status);
      }
      if (f.spoke !== undefined) {
        where.push('b.spoke = ?');
        args.push(f.spoke);
      }
      if (f.project !== undefined || f.jobset !== undefined) {
        const cond = ['eb.drv_hash = b.drv_hash'];
        if (f.project !== undefined) {
          cond.push('e.project_id = ?');
          args.push(f.project);
        }
        if (f.jobset !== undefined) {
          cond.push('e.jobset = ?');
          args.push(f.jobset);
        }
        where.push(
          `EXISTS (SELECT 1 FROM eval_builds eb JOIN evaluations e ON e.id = eb.eval_id WHERE ${cond.join(' AND ')})`,
        );
      }
      if (f.attr !== undefined) {
        const cond = ['j.drv_hash = b.drv_hash', 'j.attr = ?'];
        args.push(f.attr);
        if (f.project !== undefined) {
          cond.push('e.project_id = ?');
          args.push(f.project);
        }
        where.push(
          `EXISTS (SELECT 1 FROM eval_jobs j JOIN evaluations e ON e.id = j.eval_id WHERE ${cond.join(' AND ')})`,
        );
      }
      const sql = `SELECT b.drv_hash FROM builds b ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY b.updated_at DESC LIMIT ?`;
      return db
        .prepare<(string | number)[], { drv_hash: string }>(sql)
        .all(...args, f.limit)
        .map((r) => r.drv_hash);
    },
  };
}
