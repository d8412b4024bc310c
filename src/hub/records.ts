import type { AttrHistoryRow, BuildRequester } from '../db/history-repo.js';

/** The JSON shapes of a build's requesters and an attribute's history (API and CLI --json alike). */
export interface RequesterView {
  evaluation: number;
  project: string;
  jobset: string | null;
  commit: string | null;
  /** The attribute, when the build was that job's own derivation (not an input of it). */
  attr: string | null;
  createdAt: string;
}

export interface AttrHistoryView {
  evaluation: number;
  jobset: string | null;
  commit: string | null;
  createdAt: string;
  /** eval-failed | cached | queued | running | succeeded | failed | dependency-failed | cancelled. */
  outcome: string;
  /** Whether the attribute passed in that evaluation (null while undecided). */
  passing: boolean | null;
  drvHash: string | null;
  durationMs: number | null;
  spoke: string | null;
  error: string | null;
}

/** Where an attribute broke and was fixed, read from its history (newest first). */
export interface AttrTransition {
  attr: string;
  /** passing | failing | pending */
  state: string;
  /** The oldest evaluation of the current run of this state (the commit that broke, or fixed, it). */
  since: AttrHistoryView | null;
}

const iso = (ms: number) => new Date(ms).toISOString();

export function requesterView(r: BuildRequester): RequesterView {
  return {
    evaluation: r.evalId,
    project: r.project,
    jobset: r.jobset,
    commit: r.commit,
    attr: r.attr,
    createdAt: iso(r.createdAt),
  };
}

/** Whether an outcome passed, failed, or is not decided yet. */
function passingOf(outcome: string): boolean | null {
  if (outcome === 'succeeded' || outcome === 'cached') return true;
  if (outcome === 'queued' || outcome === 'running') return null;
  return false;
}

export function attrHistoryView(r: AttrHistoryRow): AttrHistoryView {
  const outcome = r.error !== null || r.drvHash === null ? 'eval-failed' : (r.buildStatus ?? 'cached');
  return {
    evaluation: r.evalId,
    jobset: r.jobset,
    commit: r.commit,
    createdAt: iso(r.createdAt),
    outcome,
    passing: passingOf(outcome),
    drvHash: r.drvHash,
    durationMs: r.startedAt !== null && r.finishedAt !== null ? r.finishedAt - r.startedAt : null,
    spoke: r.spoke,
    error: r.error,
  };
}

/**
 * The current state of an attribute and the evaluation that started it: walking back from the
 * newest decided evaluation while the state holds, the last one reached is where it broke (or
 * was fixed). Undecided evaluations are skipped.
 */
export function transitionOf(attr: string, history: readonly AttrHistoryView[]): AttrTransition {
  const decided = history.filter((h) => h.passing !== null);
  const newest = decided[0];
  if (!newest) return { attr, state: 'pending', since: null };
  let since = newest;
  for (const h of decided.slice(1)) {
    if (h.passing !== newest.passing) break;
    since = h;
  }
  return { attr, state: newest.passing ? 'passing' : 'failing', since };
}
