import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import { Webhooks } from '@octokit/webhooks';
import { NarhubError } from '../errors.js';
import type { GitHubConfig } from '../config/schema.js';
import { createForgeRepo, type ForkApprovalRow } from '../db/forge-repo.js';
import { createProjectsRepo } from '../db/projects-repo.js';
import type { Hub } from '../hub/hub-service.js';
import { createForgeClient, webhookSecret, type ForgeClient } from './forge-client.js';
import {
  createForgeEvents,
  type CheckRunPayload,
  type CheckSuitePayload,
  type PullRequestPayload,
  type PushPayload,
  type WebhookOutcome,
} from './forge-events.js';
import { createNotifier } from './notifier.js';
import { createPoller } from './poller.js';
import { createReporter, type Reporter } from './reporter.js';

export interface ForgeOptions {
  db: Database;
  hub: Hub;
  /** The config's `github` object; without it webhooks are refused and nothing is reported. */
  github: GitHubConfig | undefined;
  /** Base URL of the server as the forge's users reach it (links in checks); known once it listens. */
  publicUrl: () => string;
  logger: Logger;
  /** Where generated notification keys are written (the data directory's keys/). */
  keysDir: string;
  /** Tests: a shorter sync period of the reporter. */
  syncIntervalMs?: number;
}

export interface ApprovalView {
  pr: number;
  headSha: string;
  headRepo: string;
  author: string;
  title: string;
  status: string;
  approvedBy: string | null;
  createdAt: string;
}

const approvalView = (a: ForkApprovalRow): ApprovalView => ({
  pr: a.prNumber,
  headSha: a.headSha,
  headRepo: a.headRepo,
  author: a.author,
  title: a.title,
  status: a.status,
  approvedBy: a.approvedBy,
  createdAt: new Date(a.createdAt).toISOString(),
});

/** Whether `signature` is the hex HMAC-SHA256 of `body` under `secret` (Gitea's and Forgejo's webhook signature). */
function hmacMatches(secret: string, body: string, signature: string): boolean {
  const expected = createHmac('sha256', secret).update(body).digest();
  const given = Buffer.from(signature.trim().replace(/^sha256=/, ''), 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * narhub as a team's CI on its forge: webhooks in (verified with `@octokit/webhooks`), polled
 * remotes, fork approvals, and check runs or commit statuses out.
 */
export function createForge(opts: ForgeOptions) {
  const log = opts.logger.child({ component: 'forge' });
  const forge = createForgeRepo(opts.db);
  const projects = createProjectsRepo(opts.db);
  const secret = webhookSecret(opts.github);
  const webhooks = secret === null ? undefined : new Webhooks({ secret });
  const client: ForgeClient | undefined =
    opts.github?.appId || opts.github?.tokenFile ? createForgeClient(opts.github) : undefined;
  const events = createForgeEvents({ hub: opts.hub, projects, forge, client, logger: log });
  const poller = createPoller({ hub: opts.hub, projects, forge, logger: log });
  const notifier = createNotifier({
    db: opts.db,
    projects,
    evaluation: (id) => opts.hub.evaluation(id),
    keysDir: opts.keysDir,
    uiBase: () => opts.publicUrl().replace(/\/+$/, ''),
    logger: log,
  });
  const reporter: Reporter | undefined =
    client &&
    createReporter({
      db: opts.db,
      forge,
      client,
      evaluation: (id) => opts.hub.evaluation(id),
      mode: opts.github?.report ?? 'checks',
      uiBase: () => opts.publicUrl().replace(/\/+$/, ''),
      minRequestIntervalMs: opts.github?.minRequestInterval ?? 1000,
      logger: log,
      syncIntervalMs: opts.syncIntervalMs,
    });

  return {
    start(): void {
      poller.start();
      notifier.start();
      reporter?.start();
    },
    async close(): Promise<void> {
      poller.close();
      notifier.close();
      await reporter?.close();
    },
    reporter,
    poller,

    /**
     * A GitHub webhook delivery: its `X-Hub-Signature-256` is checked against the raw body
     * before anything is read from it; a bad or missing signature is a 401 and does nothing.
     */
    async githubWebhook(d: { event: string | undefined; signature: string | undefined; body: string }) {
      if (!webhooks) throw new NarhubError('UNAVAILABLE', 'webhooks are not configured (github.webhookSecretFile)');
      if (!d.signature) throw new NarhubError('UNAUTHORIZED', 'the delivery has no X-Hub-Signature-256');
      if (!(await webhooks.verify(d.body, d.signature).catch(() => false)))
        throw new NarhubError('UNAUTHORIZED', 'the delivery signature does not match the webhook secret');
      if (!d.event) throw new NarhubError('BAD_REQUEST', 'the delivery has no X-GitHub-Event');
      let payload: unknown;
      try {
        payload = JSON.parse(d.body);
      } catch {
        throw new NarhubError('BAD_REQUEST', 'the delivery body is not JSON');
      }
      let outcomes: WebhookOutcome[] = [];
      if (d.event === 'push') outcomes = events.push(payload as PushPayload);
      else if (d.event === 'pull_request') outcomes = await events.pullRequest(payload as PullRequestPayload);
      else if (d.event === 'check_run' && (payload as CheckRunPayload).action === 'rerequested')
        outcomes = await events.checkRunRerequested(payload as CheckRunPayload);
      else if (d.event === 'check_suite' && (payload as CheckSuitePayload).action === 'rerequested')
        outcomes = events.checkSuiteRerequested(payload as CheckSuitePayload);
      else if (d.event !== 'ping') return { event: d.event, outcomes, ignored: `event ${d.event} is not handled` };
      log.info({ event: d.event, outcomes }, 'webhook');
      return { event: d.event, outcomes };
    },

    /**
     * A Gitea or Forgejo webhook delivery (`X-Gitea-Event`/`X-Forgejo-Event`, signed in
     * `X-Gitea-Signature`/`X-Forgejo-Signature` with the hex HMAC-SHA256 of the raw body under the
     * same webhook secret), checked before anything is read from it. Their push and pull_request
     * payloads have GitHub's shape but for a few names, translated here, and trigger alike.
     */
    async giteaWebhook(d: { event: string | undefined; signature: string | undefined; body: string }) {
      if (secret === null)
        throw new NarhubError('UNAVAILABLE', 'webhooks are not configured (github.webhookSecretFile)');
      if (!d.signature) throw new NarhubError('UNAUTHORIZED', 'the delivery has no X-Gitea-Signature');
      if (!hmacMatches(secret, d.body, d.signature))
        throw new NarhubError('UNAUTHORIZED', 'the delivery signature does not match the webhook secret');
      if (!d.event) throw new NarhubError('BAD_REQUEST', 'the delivery has no X-Gitea-Event');
      let payload: Record<string, unknown>;
      try {
        payload = JSON.parse(d.body) as Record<string, unknown>;
      } catch {
        throw new NarhubError('BAD_REQUEST', 'the delivery body is not JSON');
      }
      if (typeof payload !== 'object' || payload === null || Array.isArray(payload))
        throw new NarhubError('BAD_REQUEST', 'the delivery body is not a JSON object');
      let outcomes: WebhookOutcome[];
      if (d.event === 'push') outcomes = events.push(payload as unknown as PushPayload);
      else if (d.event === 'pull_request') {
        // Gitea says "synchronized" where GitHub says "synchronize".
        const action = payload.action === 'synchronized' ? 'synchronize' : payload.action;
        outcomes = await events.pullRequest({ ...payload, action } as unknown as PullRequestPayload);
      } else return { event: d.event, outcomes: [], ignored: `event ${d.event} is not handled` };
      log.info({ event: d.event, outcomes, forge: 'gitea' }, 'webhook');
      return { event: d.event, outcomes };
    },

    approvals(projectName: string): ApprovalView[] {
      const p = projects.get(projectName);
      if (!p) throw new NarhubError('NOT_FOUND', `no project named ${projectName}`);
      return forge.approvals(p.id).map(approvalView);
    },
    approve: events.approve,
    /** A new HMAC key for the project's outgoing webhook, shown once. */
    rotateNotifySecret: (projectName: string) => notifier.rotateSecret(projectName),
    notifier,
    /** Checks reported for an evaluation (for the UI and tests). */
    reports(evalId: number) {
      return forge.reports(evalId);
    },
  };
}

export type Forge = ReturnType<typeof createForge>;
