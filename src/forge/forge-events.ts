import type { Logger } from 'pino';
import { NarhubError } from '../errors.js';
import type { ForgeRepo } from '../db/forge-repo.js';
import type { ProjectRow, ProjectsRepo } from '../db/projects-repo.js';
import type { Hub } from '../hub/hub-service.js';
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

/** What a webhook did, per project it concerned. */
export interface WebhookOutcome {
  project: string;
  action: 'evaluated' | 'waiting-for-approval' | 'cancelled' | 'ignored';
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
