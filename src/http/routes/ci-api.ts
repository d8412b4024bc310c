import { Type, TypeBoxValidatorCompiler, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CacheService } from '../../cache/cache-service.js';
import type { TokenRow } from '../../cache/tokens.js';
import type { Forge } from '../../forge/forge-service.js';
import type { Hub } from '../../hub/hub-service.js';
import type { Access } from '../access.js';
import type { ProjectAccess } from '../project-access.js';

export interface CiApiOptions {
  hub: Hub;
  forge: Forge;
  service: CacheService;
  access: Access;
  projectAccess: ProjectAccess;
}

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 63 }) });
const PrParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 63 }), pr: Type.Integer({ minimum: 1 }) });
const HistoryQuery = Type.Object(
  {
    attr: Type.String({ minLength: 1, maxLength: 500 }),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  },
  { additionalProperties: false },
);
const SHA = /^[0-9a-f]{40}$/;
const ZERO = /^0{40}$/;

/** The ref and commit a forge's push webhook (Gitea, Forgejo, GitLab) names, if any. */
export function pushedCommit(body: unknown): { branch?: string; commit?: string } {
  if (typeof body !== 'object' || body === null) return {};
  const b = body as Record<string, unknown>;
  const ref = typeof b.ref === 'string' ? b.ref : undefined;
  const sha = [b.after, b.checkout_sha, b.commit].find((v): v is string => typeof v === 'string' && SHA.test(v));
  return {
    ...(ref?.startsWith('refs/heads/') ? { branch: ref.slice('refs/heads/'.length) } : {}),
    ...(sha && !ZERO.test(sha) ? { commit: sha } : {}),
  };
}

/** The first of the named request headers that was sent (its first value). */
function header(request: FastifyRequest, ...names: string[]): string | undefined {
  for (const n of names) {
    const v = request.headers[n];
    const one = Array.isArray(v) ? v[0] : v;
    if (one !== undefined) return one;
  }
  return undefined;
}

/**
 * The CI's part of `/api/v1`: forge webhooks (`/webhooks/github`, `/webhooks/gitea`,
 * `/webhooks/forgejo`), the trigger any forge's webhook can call (`/projects/NAME/trigger`, a
 * `trigger` token for that project), fork pull requests waiting for approval, and the records
 * behind the UI (jobsets, attribute history).
 */
export const ciApiRoutes: FastifyPluginAsyncTypebox<CiApiOptions> = async (app, opts) => {
  const { hub, forge, access, projectAccess, service } = opts;
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store');
  const presented = (request: FastifyRequest) => request.headers.authorization !== undefined;
  const token = (request: FastifyRequest) => access.tokenOf(request);
  const requireRead = (request: FastifyRequest, project: string) =>
    projectAccess.readableCache(token(request), presented(request), `project ${project}`, () =>
      hub.projectCache(project),
    );

  // Forges sign the raw body: it is kept as text, verified, and only then parsed.
  await app.register(async (hooks) => {
    hooks.removeAllContentTypeParsers();
    hooks.addContentTypeParser(
      'application/json',
      { parseAs: 'string', bodyLimit: 25 * 1024 * 1024 },
      (_r, body, done) => done(null, body),
    );
    hooks.post('/webhooks/github', async (request, reply) => {
      const result = await forge.githubWebhook({
        event: header(request, 'x-github-event'),
        signature: header(request, 'x-hub-signature-256'),
        body: typeof request.body === 'string' ? request.body : '',
      });
      return noStore(reply).code(202).send(result);
    });
    // Gitea and Forgejo (Forgejo also sends the X-Gitea-* headers; either route takes either).
    const gitea = async (request: FastifyRequest, reply: FastifyReply) => {
      const result = await forge.giteaWebhook({
        event: header(request, 'x-forgejo-event', 'x-gitea-event'),
        signature: header(request, 'x-forgejo-signature', 'x-gitea-signature'),
        body: typeof request.body === 'string' ? request.body : '',
      });
      return noStore(reply).code(202).send(result);
    };
    hooks.post('/webhooks/gitea', gitea);
    hooks.post('/webhooks/forgejo', gitea);
  });

  // Any forge: a push webhook (or a plain POST) with a token that may trigger this project.
  // GitLab cannot send an Authorization header; its X-Gitlab-Token carries the token instead.
  app.post('/projects/:name/trigger', { schema: { params: NameParams } }, async (request, reply) => {
    const name = request.params.name;
    const gitlab = request.headers['x-gitlab-token'];
    const t: TokenRow | undefined =
      token(request) ?? (typeof gitlab === 'string' ? service.tokens.authenticate(gitlab) : undefined);
    projectAccess.requireTrigger(t, presented(request) || gitlab !== undefined, name, hub.projectCache(name));
    const project = hub.project(name);
    const { branch, commit } = pushedCommit(request.body);
    if (branch !== undefined && project.ref !== null && branch !== project.ref)
      return noStore(reply)
        .code(202)
        .send({ ignored: `branch ${branch} is not watched (the project follows ${project.ref})` });
    const e = hub.triggerEvaluation(name, {
      ...(branch !== undefined ? { ref: branch, jobset: branch } : {}),
      ...(commit !== undefined ? { commit } : {}),
      trigger: 'trigger',
      triggeredBy: t?.name ?? t?.id,
    });
    return noStore(reply).code(202).header('location', `/api/v1/evaluations/${e.id}`).send(e);
  });

  app.get('/projects/:name/approvals', { schema: { params: NameParams } }, async (request, reply) => {
    requireRead(request, request.params.name);
    return noStore(reply).send({ approvals: forge.approvals(request.params.name) });
  });

  app.post('/projects/:name/approvals/:pr', { schema: { params: PrParams } }, async (request, reply) => {
    const { name, pr } = request.params;
    const t = token(request);
    projectAccess.requireAdmin(t, presented(request), hub.projectCache(name), `approve pull requests of ${name}`);
    const e = forge.approve(name, pr, t?.name ?? t?.id ?? 'admin');
    return noStore(reply).code(202).send(e);
  });

  app.post('/projects/:name/notify-secret', { schema: { params: NameParams } }, async (request, reply) => {
    const name = request.params.name;
    projectAccess.requireAdmin(token(request), presented(request), hub.projectCache(name), `manage project ${name}`);
    return noStore(reply)
      .code(201)
      .send({ secret: forge.rotateNotifySecret(name) });
  });

  app.get('/projects/:name/jobsets', { schema: { params: NameParams } }, async (request, reply) => {
    requireRead(request, request.params.name);
    return noStore(reply).send({ jobsets: hub.jobsets(request.params.name) });
  });

  app.get(
    '/projects/:name/history',
    { schema: { params: NameParams, querystring: HistoryQuery } },
    async (request, reply) => {
      requireRead(request, request.params.name);
      const { attr, limit } = request.query;
      return noStore(reply).send({ attr, history: hub.attributeHistory(request.params.name, attr, limit ?? 50) });
    },
  );

  app.get(
    '/evaluations/:id/checks',
    { schema: { params: Type.Object({ id: Type.Integer({ minimum: 1 }) }) } },
    async (request, reply) => {
      const id = request.params.id;
      projectAccess.readableCache(token(request), presented(request), `evaluation ${id}`, () =>
        hub.evaluationCache(id),
      );
      const checks = forge.reports(request.params.id).map((r) => ({
        name: r.name,
        state: r.state,
        conclusion: r.conclusion,
        title: r.title,
        sent: r.sentVersion >= r.version,
        lastError: r.lastError,
      }));
      return noStore(reply).send({ checks });
    },
  );
};
