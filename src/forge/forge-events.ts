import type { Logger } from 'pino';
import { NarhubError } from '../errors.js';
import type { ForgeRepo } from '../db/forge-repo.js';
import type { ProjectRow, ProjectsRepo } from '../db/projects-repo.js';
import type { Hub } from '../hub/hub-service.js';
import type { EvaluationView } from '../hub/views.js';
import { ForgeRequestError, type ForgeClient } from './forge-client.js';

/** The parts of GitHub's `push` payload narhub reads. */
export interface PushPayload {
  ref: string;
  after: string;
  deleted?: boolean;
  repository: { full_name: string; default_branch?: string };
  sender?: { login: string } | null;
  pusher?: { name?: string } | null;
}

/** The parts of GitHub's `pull_request` payload narhub reads. */
export interface PullRequestPayload {
  action: string;
  number: number;
  pull_request: {
    title: string;
    user: { login: string } | null;
    head: { sha: string; repo: { full_name: string } | null };
    base: { repo: { full_name: string } };
  };
  repository: { full_name: string };
}

/** The parts of GitHub's `check_run` payload narhub reads (action `rerequested`). */
export interface CheckRunPayload {
  action: string;
  check_run: { name: string; head_sha: string; external_id?: string | null };
  repository: { full_name: string };
  sender?: { login: string } | null;
}

/** The parts of GitHub's `check_suite` payload narhub reads (action `rerequested`). */
export interface CheckSuitePayload {
  action: string;
  check_suite: { head_sha: string };
  repository: { full_name: string };
  sender?: { login: string } | null;
}

/** What a webhook did, per project it concerned. */
export interface WebhookOutcome {
  project: string;
  action: 'evaluated' | 'waiting-for-approval' | 'cancelled' | 'restarted' | 'ignored';
  /** With `restarted`: the build run again. */
  build?: string;
  evaluation?: number;
  cancelled?: number[];
  reason?: string;
}

const ZERO_SHA = /^0{40}$/;

/**
 * Forge events turned into evaluations: a push to a watched branch evaluates that commit; a pull
 * request opened, reopened or synchronized evaluates its head as jobset `pr-N`, unless it comes
 * from a fork whose author the project's policy does not trust, which then waits for an admin's
 * approval; a closed pull request cancels its jobset.
 */
export function createForgeEvents(o: {
  hub: Hub;
  projects: ProjectsRepo;
  forge: ForgeRepo;
  client: ForgeClient | undefined;
  logger: Logger;
}) {
  const { hub, projects, forge, logger } = o;

  async function mayRunFork(p: ProjectRow, author: string): Promise<boolean> {
    if (p.forkPolicy === 'everyone') return true;
    if (p.forkPolicy === 'users') return p.forkUsers.some((u) => u.toLowerCase() === author.toLowerCase());
    if (!o.client || !p.forgeRepo) return false;
    try {
      // 204: a collaborator; 404: not one.
      const res = await o.client.request(p.forgeRepo, 'GET /repos/{owner}/{repo}/collaborators/{username}', {
        username: author,
      });
      return res.status === 204;
    } catch (err) {
      if (err instanceof ForgeRequestError && err.status === 404) return false;
      logger.warn({ err, author }, 'cannot ask the forge whether the author is a collaborator; waiting for approval');
      return false;
    }
  }

  /** The newest evaluation of the project on this commit, if any. */
  function latestOfCommit(p: ProjectRow, sha: string) {
    return hub.evaluations(p.name, 200).find((e) => e.commit === sha || e.revision === sha);
  }

  /** A new evaluation of the same commit, jobset and pull request as `e` (a re-run asked on the forge). */
  function evaluateAgain(p: ProjectRow, e: EvaluationView, by: string | undefined): WebhookOutcome {
    const commit = e.commit ?? e.revision ?? undefined;
    const again = hub.triggerEvaluation(p.name, {
      ref: e.ref ?? undefined,
      commit,
      jobset: e.jobset,
      prNumber: e.prNumber ?? undefined,
      trigger: 'manual',
      triggeredBy: by ? `${by} (re-run on the forge)` : 're-run on the forge',
    });
    return { project: p.name, action: 'evaluated', evaluation: again.id };
  }

  function evaluatePr(p: ProjectRow, n: number, sha: string, trigger: 'pull_request' | 'approval', by: string) {
    return hub.triggerEvaluation(p.name, {
      ref: `refs/pull/${n}/head`,
      commit: sha,
      jobset: `pr-${n}`,
      trigger,
      prNumber: n,
      triggeredBy: by,
    });
  }

  return {
    push(payload: PushPayload): WebhookOutcome[] {
      const bound = projects.byForgeRepo(payload.repository.full_name);
      return bound.map((p): WebhookOutcome => {
        if (!payload.ref.startsWith('refs/heads/'))
          return { project: p.name, action: 'ignored', reason: 'not a branch' };
        const branch = payload.ref.slice('refs/heads/'.length);
        if (payload.deleted || ZERO_SHA.test(payload.after))
          return { project: p.name, action: 'ignored', reason: 'branch deleted' };
        const watched = p.ref ?? payload.repository.default_branch ?? null;
        if (branch !== watched)
          return { project: p.name, action: 'ignored', reason: `branch ${branch} is not watched` };
        const e = hub.triggerEvaluation(p.name, {
          ref: branch,
          commit: payload.after,
          jobset: branch,
          trigger: 'push',
          triggeredBy: payload.sender?.login ?? payload.pusher?.name ?? undefined,
        });
        return { project: p.name, action: 'evaluated', evaluation: e.id };
      });
    },

    async pullRequest(payload: PullRequestPayload): Promise<WebhookOutcome[]> {
      const pr = payload.pull_request;
      const n = payload.number;
      const out: WebhookOutcome[] = [];
      for (const p of projects.byForgeRepo(payload.repository.full_name)) {
        if (payload.action === 'closed') {
          forge.forget(p.id, n);
          const cancelled = await hub.cancelJobset(p.name, `pr-${n}`, `pull request #${n} was closed`);
          out.push({ project: p.name, action: 'cancelled', cancelled });
          continue;
        }
        if (!['opened', 'reopened', 'synchronize'].includes(payload.action)) {
          out.push({ project: p.name, action: 'ignored', reason: `action ${payload.action}` });
          continue;
        }
        const author = pr.user?.login ?? 'ghost';
        const headRepo = pr.head.repo?.full_name ?? '(deleted fork)';
        const fromFork = headRepo.toLowerCase() !== pr.base.repo.full_name.toLowerCase();
        const approved = forge.approval(p.id, n);
        const approvedHead = approved?.status === 'approved' && approved.headSha === pr.head.sha;
        if (fromFork && !approvedHead && !(await mayRunFork(p, author))) {
          forge.wait({ projectId: p.id, prNumber: n, headSha: pr.head.sha, headRepo, author, title: pr.title });
          logger.info({ project: p.name, pr: n, author }, 'pull request from a fork waits for approval');
          out.push({
            project: p.name,
            action: 'waiting-for-approval',
            reason: `${author} is not trusted by the fork policy`,
          });
          continue;
        }
        const e = evaluatePr(p, n, pr.head.sha, 'pull_request', author);
        out.push({ project: p.name, action: 'evaluated', evaluation: e.id });
      }
      return out;
    },

    /**
     * "Re-run" of one check run: the evaluation's own check evaluates that commit again; an
     * attribute whose build failed, timed out or was cancelled gets a new attempt (one that only
     * failed because an input did: that input), and one that did not evaluate is evaluated again.
     * Its state then goes out as a new check run. A check that succeeded has nothing to re-run.
     */
    async checkRunRerequested(payload: CheckRunPayload): Promise<WebhookOutcome[]> {
      const run = payload.check_run;
      const by = payload.sender?.login;
      const name = run.name.startsWith('narhub: ') ? run.name.slice('narhub: '.length) : undefined;
      const out: WebhookOutcome[] = [];
      for (const p of projects.byForgeRepo(payload.repository.full_name)) {
        // The external id narhub gave the check run (`<evaluation>/<attribute>`), else its commit and name.
        const ext = /^(\d+)\/(.*)$/.exec(run.external_id ?? '');
        const evalId = ext ? Number(ext[1]) : latestOfCommit(p, run.head_sha)?.id;
        const attr = ext ? ext[2]! : name === 'evaluation' ? '' : name;
        const e = evalId === undefined ? undefined : await hub.evaluation(evalId).catch(() => undefined);
        if (!e || e.project !== p.name || attr === undefined || (e.commit ?? e.revision) !== run.head_sha) {
          out.push({ project: p.name, action: 'ignored', reason: 'not a check run of this project' });
          continue;
        }
        const job = attr === '' ? undefined : e.jobs?.find((j) => j.attr === attr);
        if (attr === '' || job?.status === 'eval-failed') {
          out.push(evaluateAgain(p, e, by));
          continue;
        }
        if (!job?.drvHash || !['failed', 'dependency-failed', 'cancelled'].includes(job.status)) {
          out.push({ project: p.name, action: 'ignored', reason: `${attr} is ${job?.status ?? 'unknown'}` });
          continue;
        }
        const root = job.status === 'dependency-failed' && job.failedDependency ? job.failedDependency : job.drvHash;
        const restarted = await hub.restartBuild(root);
        forge.renew(e.id, attr);
        logger.info({ project: p.name, evaluation: e.id, attr, build: restarted.drvPath, by }, 'check re-run');
        out.push({ project: p.name, action: 'restarted', evaluation: e.id, build: restarted.drvPath });
      }
      return out;
    },

    /** "Re-run all checks" of a commit: its newest evaluation, evaluated again. */
    checkSuiteRerequested(payload: CheckSuitePayload): WebhookOutcome[] {
      return projects.byForgeRepo(payload.repository.full_name).map((p): WebhookOutcome => {
        const e = latestOfCommit(p, payload.check_suite.head_sha);
        return e
          ? evaluateAgain(p, e, payload.sender?.login)
          : { project: p.name, action: 'ignored', reason: 'no evaluation of this commit' };
      });
    },

    /** An admin lets a waiting fork PR's head be evaluated. */
    approve(projectName: string, prNumber: number, by: string) {
      const p = projects.get(projectName);
      if (!p) throw new NarhubError('NOT_FOUND', `no project named ${projectName}`);
      const a = forge.approval(p.id, prNumber);
      if (!a)
        throw new NarhubError('NOT_FOUND', `pull request #${prNumber} of ${projectName} is not waiting for approval`);
      forge.approve(p.id, prNumber, by);
      return evaluatePr(p, prNumber, a.headSha, 'approval', by);
    },
  };
}
