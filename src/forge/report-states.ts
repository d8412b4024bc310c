import type { WantedReport } from '../db/forge-repo.js';
import type { EvaluationView, JobView } from '../hub/views.js';

/** GitHub caps a check run's output text at 65,535 characters. */
const MAX_TEXT = 60_000;
const clip = (s: string, n: number) => (s.length <= n ? s : `${s.slice(0, n - 1)}…`);
const seconds = (ms: number | null) => (ms === null ? '' : ` in ${Math.max(0, Math.round(ms / 1000))} s`);

/** The check's name on the forge: `narhub: <attr>`, and `narhub: evaluation` for the evaluation itself. */
export function checkName(name: string): string {
  return `narhub: ${name === '' ? 'evaluation' : name}`;
}

type State = Pick<WantedReport, 'state' | 'conclusion' | 'title' | 'summary' | 'text'>;

/** What the evaluation's own check shows: queued, evaluating, then its verdict (an error carries its text). */
export function evaluationState(e: EvaluationView): State {
  if (e.status === 'pending')
    return { state: 'queued', conclusion: null, title: 'Waiting to evaluate', summary: '', text: null };
  if (e.status === 'evaluating')
    return {
      state: 'in_progress',
      conclusion: null,
      title: 'Evaluating',
      summary: `Evaluating ${e.flakeUrl}`,
      text: null,
    };
  const jobs = e.jobs ?? [];
  if (jobs.length === 0 && e.error !== null)
    return {
      state: 'completed',
      conclusion: e.status === 'cancelled' ? 'cancelled' : 'failure',
      title: e.status === 'cancelled' ? 'Cancelled' : 'Evaluation failed',
      summary: clip(e.error.split('\n')[0] ?? '', 500),
      text: clip(e.error, MAX_TEXT),
    };
  if (jobs.length === 0 && e.status === 'cancelled')
    return { state: 'completed', conclusion: 'cancelled', title: 'Cancelled', summary: '', text: null };
  const broken = jobs.filter((j) => j.status === 'eval-failed');
  return {
    state: 'completed',
    conclusion: broken.length > 0 ? 'failure' : 'success',
    title:
      broken.length > 0
        ? `${broken.length} of ${jobs.length} attributes did not evaluate`
        : `${jobs.length} attribute${jobs.length === 1 ? '' : 's'} evaluated`,
    summary: broken.map((j) => `- \`${j.attr}\`: ${clip((j.error ?? '').split('\n')[0] ?? '', 200)}`).join('\n'),
    text: null,
  };
}

/** What an attribute's check shows, from its job: queued → in progress → completed with its conclusion. */
export function jobState(j: JobView): State {
  switch (j.status) {
    case 'queued':
      return { state: 'queued', conclusion: null, title: j.waitingFor ?? 'Queued', summary: '', text: null };
    case 'running':
      return {
        state: 'in_progress',
        conclusion: null,
        title: `Building${j.spoke ? ` on ${j.spoke}` : ''}`,
        summary: j.drvPath ?? '',
        text: null,
      };
    case 'succeeded':
      return {
        state: 'completed',
        conclusion: 'success',
        title: `Built${seconds(j.durationMs)}${j.spoke ? ` on ${j.spoke}` : ''}`,
        summary: Object.values(j.outputs).join('\n'),
        text: null,
      };
    case 'cached':
      return {
        state: 'completed',
        conclusion: 'success',
        title: 'Already in the cache',
        summary: Object.values(j.outputs).join('\n'),
        text: null,
      };
    case 'eval-failed':
      return {
        state: 'completed',
        conclusion: 'failure',
        title: 'Does not evaluate',
        summary: clip((j.error ?? '').split('\n')[0] ?? '', 500),
        text: clip(j.error ?? '', MAX_TEXT),
      };
    case 'dependency-failed':
      return {
        state: 'completed',
        conclusion: 'failure',
        title: 'A dependency failed',
        summary: `The build of ${j.failedDependency ?? 'an input'} failed.`,
        text: null,
      };
    case 'cancelled':
      return { state: 'completed', conclusion: 'cancelled', title: 'Cancelled', summary: j.error ?? '', text: null };
    default: {
      const timedOut = j.failureKind === 'timeout';
      const notRebuilt = j.fromFailureCache ? ' (failed before; not built again)' : '';
      return {
        state: 'completed',
        conclusion: timedOut ? 'timed_out' : 'failure',
        title: `${timedOut ? 'Timed out' : 'Build failed'}${notRebuilt}`,
        summary: clip((j.error ?? '').split('\n')[0] ?? '', 500),
        text: j.error ? clip(j.error, MAX_TEXT) : null,
      };
    }
  }
}

/** Every check an evaluation shows on its commit: the evaluation's, then one per attribute. */
export function wantedReports(e: EvaluationView, repo: string, sha: string, uiBase: string): WantedReport[] {
  const evalUrl = `${uiBase}/ui/evaluations/${e.id}`;
  const out: WantedReport[] = [{ name: '', repo, sha, detailsUrl: evalUrl, ...evaluationState(e) }];
  for (const j of e.jobs ?? []) {
    const detailsUrl = j.drvHash ? `${uiBase}/ui/builds/${j.drvHash}` : `${evalUrl}#${encodeURIComponent(j.attr)}`;
    out.push({ name: j.attr, repo, sha, detailsUrl, ...jobState(j) });
  }
  return out;
}

/** A commit status for forges without checks (Gitea, Forgejo): pending, success, failure or error. */
export function commitStatusOf(r: WantedReport): { state: string; description: string } {
  const state =
    r.state !== 'completed'
      ? 'pending'
      : r.conclusion === 'success'
        ? 'success'
        : r.conclusion === 'failure' || r.conclusion === 'timed_out'
          ? 'failure'
          : 'error';
  return { state, description: clip(r.title, 140) };
}
