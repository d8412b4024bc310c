import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import type { ForgeRepo, ReportRow } from '../db/forge-repo.js';
import type { EvaluationView } from '../hub/views.js';
import { ForgeRequestError, type ForgeClient } from './forge-client.js';
import { checkName, commitStatusOf, wantedReports } from './report-states.js';

export interface ReporterOptions {
  db: Database;
  forge: ForgeRepo;
  client: ForgeClient;
  /** The evaluation with its jobs, as the API shows it. */
  evaluation(id: number): Promise<EvaluationView>;
  mode: 'checks' | 'statuses';
  /** Where the UI is reached, for the checks' links. */
  uiBase: () => string;
  /** Least time between two requests to the forge (GitHub's secondary limits). */
  minRequestIntervalMs: number;
  logger: Logger;
  /** How often evaluations are compared with what was reported. */
  syncIntervalMs?: number;
}

const RECENT_MS = 30 * 60_000;
const MAX_BACKOFF_MS = 5 * 60_000;

/**
 * Shows evaluations on their commits: one check run per attribute plus one for the evaluation
 * (or commit statuses). Wanted states are recorded in `forge_reports` (a change bumps a version)
 * and an outbox loop sends them, one request at a time and at most one per
 * `minRequestIntervalMs`: states that change faster than they are sent are coalesced, so only
 * the newest is ever sent, and a late answer cannot overwrite a newer state. A forge that is
 * down is retried with backoff while builds go on; a rate-limited answer (`Retry-After`, or
 * `x-ratelimit-remaining: 0`) pauses all sending until the forge says.
 */
export function createReporter(opts: ReporterOptions) {
  const { db, forge, client, logger } = opts;
  const fingerprints = new Map<number, string>();
  let pausedUntil = 0;
  let stopped = false;
  let syncTimer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  let sending: Promise<void> = Promise.resolve();
  let syncing = false;

  // Evaluations of forge-bound projects that are live or ended recently, with what changes when they do.
  const candidates = db.prepare<
    [number],
    { id: number; repo: string; sha: string | null; fp: string }
  >(`SELECT e.id, p.forge_repo AS repo, coalesce(e.commit_sha, e.revision) AS sha,
      e.status || ':' || coalesce(e.finished_at, 0) || ':' || coalesce(e.evaluated_at, 0) || ':' ||
      coalesce((SELECT max(b.updated_at) FROM eval_builds eb JOIN builds b ON b.drv_hash = eb.drv_hash
        WHERE eb.eval_id = e.id), 0) AS fp
    FROM evaluations e JOIN projects p ON p.id = e.project_id
    WHERE p.forge_repo IS NOT NULL AND (e.status IN ('pending', 'evaluating', 'building') OR e.finished_at > ?)`);

  /** Records the wanted states of every changed evaluation; returns how many checks changed. */
  async function sync(): Promise<number> {
    if (syncing) return 0;
    syncing = true;
    let changed = 0;
    try {
      for (const c of candidates.all(Date.now() - RECENT_MS)) {
        if (c.sha === null || fingerprints.get(c.id) === c.fp) continue;
        let e: EvaluationView;
        try {
          e = await opts.evaluation(c.id);
        } catch {
          continue;
        }
        const wanted = wantedReports(e, c.repo, c.sha, opts.uiBase());
        db.transaction(() => {
          for (const w of wanted) if (forge.want(c.id, w)) changed++;
        })();
        fingerprints.set(c.id, c.fp);
      }
    } finally {
      syncing = false;
    }
    if (changed > 0) wake?.();
    return changed;
  }

  async function sendOne(r: ReportRow): Promise<void> {
    if (opts.mode === 'statuses') {
      const s = commitStatusOf(r);
      await client.request(r.repo, 'POST /repos/{owner}/{repo}/statuses/{sha}', {
        sha: r.sha,
        state: s.state,
        description: s.description,
        context: checkName(r.name),
        ...(r.detailsUrl ? { target_url: r.detailsUrl } : {}),
      });
      forge.sent(r.evalId, r.name, r.version, null);
      return;
    }
    const body = {
      name: checkName(r.name),
      status: r.state,
      ...(r.state === 'completed' ? { conclusion: r.conclusion, completed_at: new Date().toISOString() } : {}),
      ...(r.detailsUrl ? { details_url: r.detailsUrl } : {}),
      external_id: `${r.evalId}/${r.name}`,
      output: { title: r.title, summary: r.summary || r.title, ...(r.text ? { text: r.text } : {}) },
    };
    if (r.remoteId === null) {
      const res = await client.request(r.repo, 'POST /repos/{owner}/{repo}/check-runs', { head_sha: r.sha, ...body });
      forge.sent(r.evalId, r.name, r.version, (res.data as { id: number }).id);
    } else {
      await client.request(r.repo, 'PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}', {
        check_run_id: r.remoteId,
        ...body,
      });
      forge.sent(r.evalId, r.name, r.version, null);
    }
  }

  /** A refused request: pause everything on a rate limit, back off on trouble, drop what the forge rejects for good. */
  function handleFailure(r: ReportRow, err: unknown): void {
    const status = err instanceof ForgeRequestError ? err.status : 0;
    const headers = err instanceof ForgeRequestError ? err.headers : {};
    const message = err instanceof Error ? err.message : String(err);
    const retryAfter = Number(headers['retry-after']);
    const remaining = headers['x-ratelimit-remaining'];
    if ((status === 403 || status === 429) && (Number.isFinite(retryAfter) || String(remaining) === '0')) {
      const until = Number.isFinite(retryAfter)
        ? Date.now() + retryAfter * 1000
        : Number(headers['x-ratelimit-reset']) * 1000 || Date.now() + 60_000;
      pausedUntil = Math.max(pausedUntil, until);
      logger.warn({ status, until: new Date(until).toISOString() }, 'forge rate limit: pausing status updates');
      return;
    }
    if (status === 422 || status === 400) {
      logger.warn({ err: message, check: r.name, evaluation: r.evalId }, 'forge refused a status update; dropped');
      forge.dropped(r.evalId, r.name, r.version, message);
      return;
    }
    const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(r.tries, 20));
    forge.failed(r.evalId, r.name, Date.now() + delay, message);
    logger.warn({ err: message, status, retryInMs: delay }, 'forge status update failed; will retry');
  }

  async function sendLoop(): Promise<void> {
    let last = 0;
    while (!stopped) {
      const now = Date.now();
      const due = now < pausedUntil ? [] : forge.due(now, 50);
      if (due.length === 0) {
        const next = forge.nextDue();
        const wait = Math.max(50, Math.min(5_000, Math.max(pausedUntil, next ?? Infinity) - now));
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = undefined;
        continue;
      }
      for (const r of due) {
        if (stopped || Date.now() < pausedUntil) break;
        const gap = last + opts.minRequestIntervalMs - Date.now();
        if (gap > 0) await new Promise((resolve) => setTimeout(resolve, gap));
        // The newest wanted state, read just before sending it.
        const current = forge.report(r.evalId, r.name);
        if (!current || current.version <= current.sentVersion) continue;
        last = Date.now();
        try {
          await sendOne(current);
        } catch (err) {
          handleFailure(current, err);
        }
      }
    }
  }

  return {
    sync,
    start(): void {
      const every = opts.syncIntervalMs ?? 500;
      const tick = () => {
        if (stopped) return;
        sync()
          .catch((err: unknown) => logger.warn({ err }, 'forge sync failed'))
          .finally(() => {
            if (!stopped) syncTimer = setTimeout(tick, every);
          });
      };
      tick();
      sending = sendLoop().catch((err: unknown) => logger.error({ err }, 'forge reporter stopped'));
    },
    /** Pauses sending until `until` (tests; also what a rate limit does). */
    get pausedUntil(): number {
      return pausedUntil;
    },
    async close(): Promise<void> {
      stopped = true;
      if (syncTimer) clearTimeout(syncTimer);
      wake?.();
      await sending;
    },
  };
}

export type Reporter = ReturnType<typeof createReporter>;
