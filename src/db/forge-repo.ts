import type { Database } from 'better-sqlite3';

export interface ForkApprovalRow {
  projectId: number;
  prNumber: number;
  headSha: string;
  headRepo: string;
  author: string;
  title: string;
  status: 'waiting' | 'approved';
  approvedBy: string | null;
  createdAt: number;
  updatedAt: number;
}

/** The state a forge should show for one check (an attribute, or '' for the evaluation). */
export interface WantedReport {
  name: string;
  repo: string;
  sha: string;
  state: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
  title: string;
  summary: string;
  text: string | null;
  detailsUrl: string | null;
}

export interface ReportRow extends WantedReport {
  evalId: number;
  version: number;
  sentVersion: number;
  remoteId: number | null;
  tries: number;
  nextTryAt: number;
  lastError: string | null;
}

interface RawReport {
  eval_id: number;
  name: string;
  repo: string;
  sha: string;
  state: WantedReport['state'];
  conclusion: string | null;
  title: string;
  summary: string;
  text: string | null;
  details_url: string | null;
  version: number;
  sent_version: number;
  remote_id: number | null;
  tries: number;
  next_try_at: number;
  last_error: string | null;
}

const toReport = (r: RawReport): ReportRow => ({
  evalId: r.eval_id,
  name: r.name,
  repo: r.repo,
  sha: r.sha,
  state: r.state,
  conclusion: r.conclusion,
  title: r.title,
  summary: r.summary,
  text: r.text,
  detailsUrl: r.details_url,
  version: r.version,
  sentVersion: r.sent_version,
  remoteId: r.remote_id,
  tries: r.tries,
  nextTryAt: r.next_try_at,
  lastError: r.last_error,
});

/** Fork pull requests waiting for approval, polled heads, and the outbox of forge reports. */
export function createForgeRepo(db: Database) {
  const approval = db.prepare<[number, number], Record<string, unknown>>(
    'SELECT * FROM fork_approvals WHERE project_id = ? AND pr_number = ?',
  );
  const approvalsOf = db.prepare<[number], Record<string, unknown>>(
    `SELECT * FROM fork_approvals WHERE project_id = ? ORDER BY pr_number DESC`,
  );
  const upsertApproval =
    db.prepare(`INSERT INTO fork_approvals (project_id, pr_number, head_sha, head_repo, author, title, status,
      created_at, updated_at)
    VALUES (@projectId, @prNumber, @headSha, @headRepo, @author, @title, 'waiting', @now, @now)
    ON CONFLICT (project_id, pr_number) DO UPDATE SET
      status = CASE WHEN head_sha = excluded.head_sha THEN status ELSE 'waiting' END,
      approved_by = CASE WHEN head_sha = excluded.head_sha THEN approved_by ELSE NULL END,
      head_sha = excluded.head_sha, head_repo = excluded.head_repo, title = excluded.title,
      updated_at = excluded.updated_at`);
  const approve = db.prepare(
    `UPDATE fork_approvals SET status = 'approved', approved_by = ?, updated_at = ? ` +
      'WHERE project_id = ? AND pr_number = ?',
  );
  const removeApproval = db.prepare('DELETE FROM fork_approvals WHERE project_id = ? AND pr_number = ?');
  const head = db.prepare<[number, string], { sha: string }>(
    'SELECT sha FROM poll_heads WHERE project_id = ? AND ref = ?',
  );
  const setHead = db.prepare(`INSERT INTO poll_heads (project_id, ref, sha, seen_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (project_id, ref) DO UPDATE SET sha = excluded.sha, seen_at = excluded.seen_at`);
  const report = db.prepare<[number, string], RawReport>('SELECT * FROM forge_reports WHERE eval_id = ? AND name = ?');
  const reportsOf = db.prepare<[number], RawReport>('SELECT * FROM forge_reports WHERE eval_id = ? ORDER BY name');
  const insertReport =
    db.prepare(`INSERT INTO forge_reports (eval_id, name, repo, sha, state, conclusion, title, summary, text,
      details_url, updated_at)
    VALUES (@evalId, @name, @repo, @sha, @state, @conclusion, @title, @summary, @text, @detailsUrl, @now)`);
  const changeReport =
    db.prepare(`UPDATE forge_reports SET state = @state, conclusion = @conclusion, title = @title, summary = @summary,
    text = @text, details_url = @detailsUrl, version = version + 1, tries = 0, next_try_at = 0, updated_at = @now
    WHERE eval_id = @evalId AND name = @name`);
  const due = db.prepare<[number, number], RawReport>(
    'SELECT * FROM forge_reports WHERE version > sent_version AND next_try_at <= ? ' +
      'ORDER BY next_try_at, eval_id, name LIMIT ?',
  );
  const nextDue = db.prepare<[], { at: number | null }>(
    'SELECT min(next_try_at) AS at FROM forge_reports WHERE version > sent_version',
  );
  const sent = db.prepare(
    `UPDATE forge_reports SET sent_version = max(sent_version, ?), remote_id = coalesce(?, remote_id), tries = 0,
     last_error = NULL WHERE eval_id = ? AND name = ?`,
  );
  const failed = db.prepare(
    'UPDATE forge_reports SET tries = tries + 1, next_try_at = ?, last_error = ? WHERE eval_id = ? AND name = ?',
  );
  // A new version, so the row goes out again even when the re-run ends where it was.
  const renew = db.prepare(
    `UPDATE forge_reports SET remote_id = NULL, version = version + 1, tries = 0, next_try_at = 0, last_error = NULL
     WHERE eval_id = ? AND name = ?`,
  );
  const dropped = db.prepare(
    'UPDATE forge_reports SET sent_version = ?, last_error = ? WHERE eval_id = ? AND name = ? AND version = ?',
  );

  const toApproval = (r: Record<string, unknown>): ForkApprovalRow => ({
    projectId: r.project_id as number,
    prNumber: r.pr_number as number,
    headSha: r.head_sha as string,
    headRepo: r.head_repo as string,
    author: r.author as string,
    title: r.title as string,
    status: r.status as ForkApprovalRow['status'],
    approvedBy: r.approved_by as string | null,
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
  });

  return {
    approval(projectId: number, prNumber: number): ForkApprovalRow | undefined {
      const r = approval.get(projectId, prNumber);
      return r && toApproval(r);
    },
    approvals(projectId: number): ForkApprovalRow[] {
      return approvalsOf.all(projectId).map(toApproval);
    },
    /** Records a fork PR that waits; a new head needs a new approval (an approval is of one commit). */
    wait(a: { projectId: number; prNumber: number; headSha: string; headRepo: string; author: string; title: string }) {
      upsertApproval.run({ ...a, now: Date.now() });
    },
    approve(projectId: number, prNumber: number, by: string): boolean {
      return approve.run(by, Date.now(), projectId, prNumber).changes > 0;
    },
    forget(projectId: number, prNumber: number): void {
      removeApproval.run(projectId, prNumber);
    },
    polledHead(projectId: number, ref: string): string | undefined {
      return head.get(projectId, ref)?.sha;
    },
    setPolledHead(projectId: number, ref: string, sha: string): void {
      setHead.run(projectId, ref, sha, Date.now());
    },

    /**
     * Records the wanted state of a check; a change bumps its version (so it is sent again). Returns whether it
     * changed.
     */
    want(evalId: number, w: WantedReport): boolean {
      const old = report.get(evalId, w.name);
      const row = { evalId, ...w, now: Date.now() };
      if (!old) {
        insertReport.run(row);
        return true;
      }
      if (
        old.state === w.state &&
        old.conclusion === w.conclusion &&
        old.title === w.title &&
        old.summary === w.summary &&
        old.text === w.text &&
        old.details_url === w.detailsUrl
      )
        return false;
      changeReport.run(row);
      return true;
    },
    report(evalId: number, name: string): ReportRow | undefined {
      const r = report.get(evalId, name);
      return r && toReport(r);
    },
    reports(evalId: number): ReportRow[] {
      return reportsOf.all(evalId).map(toReport);
    },
    due(now: number, limit: number): ReportRow[] {
      return due.all(now, limit).map(toReport);
    },
    /** When the next unsent report may be tried (null: nothing to send). */
    nextDue(): number | null {
      return nextDue.get()?.at ?? null;
    },
    sent(evalId: number, name: string, version: number, remoteId: number | null): void {
      sent.run(version, remoteId, evalId, name);
    },
    failed(evalId: number, name: string, nextTryAt: number, error: string): void {
      failed.run(nextTryAt, error.slice(0, 1000), evalId, name);
    },
    /** A check run asked to run again: its state goes out again as a new check run (GitHub keeps the old one). */
    renew(evalId: number, name: string): void {
      renew.run(evalId, name);
    },
    /** Gives up on a version the forge refuses for good (a 4xx other than rate limits). */
    dropped(evalId: number, name: string, version: number, error: string): void {
      dropped.run(version, error.slice(0, 1000), evalId, name, version);
    },
  };
}

export type ForgeRepo = ReturnType<typeof createForgeRepo>;
