import { Type } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { VNode } from 'preact';
import { NarhubError } from '../../errors.js';
import type { TokenRow } from '../../cache/tokens.js';
import type { Forge } from '../../forge/forge-service.js';
import type { Hub } from '../../hub/hub-service.js';
import { transitionOf } from '../../hub/records.js';
import type { BuildView } from '../../hub/views.js';
import { openEventStream } from '../event-stream.js';
import { createHubVisibility } from '../hub-visibility.js';
import type { ProjectAccess } from '../project-access.js';
import type { TypeboxApp } from '../typebox-app.js';
import { BuildPage, EvaluationPage, IndexPage, ProjectPage, QueuesPage, SpokesPage, type Viewer } from './pages.js';

const LOG_TAIL_BYTES = 64 * 1024;

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 63 }) });
const IdParams = Type.Object({ id: Type.Integer({ minimum: 1 }) });
const HashParams = Type.Object({ hash: Type.String({ pattern: '^[0-9a-df-np-sv-z]{32}$' }) });

/** What the UI's shell gives the pages it registers: rendering, the session, and the access rule. */
export interface UiContext {
  html(reply: FastifyReply, page: VNode, status?: number): FastifyReply;
  viewerOf(request: FastifyRequest, reply: FastifyReply): Viewer;
  tokenOf(request: FastifyRequest): TokenRow | undefined;
  /** Whether the session may read `cache` (public caches: anyone). */
  readable(request: FastifyRequest, cache: string): boolean;
  /** The error a page the visitor may not read answers with: "not found". */
  hidden(what: string): NarhubError;
  requireAdminOf(request: FastifyRequest, cache: string): void;
  /** Open SSE streams, ended when the server closes. */
  streams: Set<AbortController>;
  access: ProjectAccess;
  publicUrl(): string;
}

/**
 * The hub's pages: projects (the index), evaluations, builds with their logs, spokes, queues,
 * and the admin actions on them. Registered only when narhub runs a build hub (with Redis).
 */
export async function hubPages(app: TypeboxApp, ui: UiContext, hub: Hub, forge: Forge): Promise<void> {
  const { html, viewerOf, tokenOf, readable, hidden, requireAdminOf, streams, access: pa } = ui;
  const visible = createHubVisibility(hub, pa);

  app.get('/', async (request, reply) => {
    const projects = hub
      .listProjects()
      .filter((p) => readable(request, p.cache))
      .map((project) => ({ project, latest: hub.evaluations(project.name, 1)[0] ?? null }));
    return html(reply, <IndexPage viewer={viewerOf(request, reply)} projects={projects} />);
  });

  app.get('/projects/:name', { schema: { params: NameParams } }, async (request, reply) => {
    const name = request.params.name;
    const project = hub.project(name);
    if (!readable(request, project.cache)) throw hidden('project');
    const mainJobset = project.ref ?? 'default';
    const latest = hub.evaluations(name, 1, mainJobset)[0];
    const full = latest ? await hub.evaluation(latest.id) : undefined;
    const attrs = (full?.jobs ?? []).map((j) => transitionOf(j.attr, hub.attributeHistory(name, j.attr, 100)));
    const t = tokenOf(request);
    return html(
      reply,
      <ProjectPage
        viewer={viewerOf(request, reply)}
        project={project}
        jobsets={hub.jobsets(name)}
        attrs={attrs}
        mainJobset={mainJobset}
        approvals={forge.approvals(name)}
        canAdmin={pa.canAdmin(t, project.cache)}
        canTrigger={pa.canTrigger(t, name, project.cache)}
      />,
    );
  });

  app.get('/evaluations/:id', { schema: { params: IdParams } }, async (request, reply) => {
    const cache = hub.evaluationCache(request.params.id);
    if (!readable(request, cache)) throw hidden('evaluation');
    const e = await hub.evaluation(request.params.id);
    const live = ['pending', 'evaluating', 'building'].includes(e.status);
    return html(
      reply,
      <EvaluationPage
        viewer={viewerOf(request, reply)}
        e={e}
        live={live}
        canAdmin={pa.canAdmin(tokenOf(request), cache)}
      />,
    );
  });

  // SSE: "changed" whenever the evaluation or one of its builds changes; "end" once it ended.
  app.get('/evaluations/:id/events', { schema: { params: IdParams } }, async (request, reply) => {
    const id = request.params.id;
    if (!readable(request, hub.evaluationCache(id))) throw hidden('evaluation');
    const { res, send } = openEventStream(reply);
    const controller = new AbortController();
    streams.add(controller);
    res.on('close', () => controller.abort());
    let last = '';
    try {
      while (!controller.signal.aborted) {
        const e = await hub.evaluation(id);
        const fp = JSON.stringify([e.status, e.builds, (e.jobs ?? []).map((j) => j.status)]);
        if (last !== '' && fp !== last) send('changed', '');
        last = fp;
        if (!['pending', 'evaluating', 'building'].includes(e.status)) {
          send('end', '');
          break;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    } finally {
      streams.delete(controller);
      res.end();
    }
  });

  const buildOf = async (request: FastifyRequest, hash: string) => {
    const cache = hub.buildCache(hash);
    if (!readable(request, cache)) throw hidden('build');
    const b = await hub.build(hash);
    return { ...b, requestedBy: visible.requesters(tokenOf(request), b.requestedBy) };
  };

  app.get('/builds/:hash', { schema: { params: HashParams } }, async (request, reply) => {
    const b = await buildOf(request, request.params.hash);
    const live = b.status === 'queued' || b.status === 'running';
    const log = await logTail(hub, b.drvHash);
    return html(
      reply,
      <BuildPage
        viewer={viewerOf(request, reply)}
        b={b}
        log={log}
        live={live}
        canAdmin={pa.canAdmin(tokenOf(request), b.cache)}
        substituter={`${ui.publicUrl()}/${b.cache}`}
      />,
    );
  });

  // The whole log, as plain text (never rendered by the browser as HTML).
  app.get('/builds/:hash/log', { schema: { params: HashParams } }, async (request, reply) => {
    const b = await buildOf(request, request.params.hash);
    const log = await hub.log(b.drvHash);
    reply
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', "default-src 'none'")
      .header('cache-control', 'no-store');
    reply.type('text/plain; charset=utf-8');
    if (log.kind === 'stored') return reply.send(log.stream);
    if (log.kind === 'live') return reply.send(log.text);
    throw new NarhubError('NOT_FOUND', 'no log yet');
  });

  app.get('/builds/:hash/log/events', { schema: { params: HashParams } }, async (request, reply) => {
    const b = await buildOf(request, request.params.hash);
    const { res, send } = openEventStream(reply);
    const controller = new AbortController();
    streams.add(controller);
    res.on('close', () => controller.abort());
    try {
      if (hub.buildIsOpen(b.drvHash))
        for await (const chunk of hub.followLog(b.drvHash, controller.signal)) send('log', chunk);
      if (!controller.signal.aborted) send('end', (await hub.build(b.drvHash)).status);
    } catch (err) {
      if (!controller.signal.aborted) request.log.warn({ err }, 'live log failed');
    } finally {
      streams.delete(controller);
      res.end();
    }
  });

  // Spokes and queues belong to no project: like the API, they need a session (any token).
  const requireSession = (request: FastifyRequest) => {
    if (!tokenOf(request)) throw new NarhubError('UNAUTHORIZED', 'Log in to see the spokes and queues.');
  };

  app.get('/spokes', async (request, reply) => {
    requireSession(request);
    const spokes = visible.spokes(tokenOf(request), await hub.spokes().catch(() => []));
    const running = new Map<string, { drvPath: string; startedAt: string | null } | null>();
    for (const s of spokes)
      for (const h of s.running) {
        const b = await hub.build(h).catch(() => undefined);
        running.set(h, b ? { drvPath: b.drvPath, startedAt: b.startedAt } : null);
      }
    return html(reply, <SpokesPage viewer={viewerOf(request, reply)} spokes={spokes} running={running} />);
  });

  app.get('/queues', async (request, reply) => {
    requireSession(request);
    const queues = await hub.queues().catch(() => []);
    const stuck: BuildView[] = (await hub.builds('queued', 200)).filter(
      (b) => readable(request, b.cache) && /no connected spoke|no spoke/i.test(b.waitingFor ?? ''),
    );
    return html(reply, <QueuesPage viewer={viewerOf(request, reply)} queues={queues} stuck={stuck} />);
  });

  // Admin actions: a POST with the session's CSRF token, then back to the page.

  app.post(
    '/builds/:hash/restart',
    { preValidation: app.csrfProtection, schema: { params: HashParams } },
    async (request, reply) => {
      requireAdminOf(request, hub.buildCache(request.params.hash));
      await hub.restartBuild(request.params.hash);
      return reply.redirect(`/ui/builds/${request.params.hash}`, 303);
    },
  );
  app.post(
    '/builds/:hash/cancel',
    { preValidation: app.csrfProtection, schema: { params: HashParams } },
    async (request, reply) => {
      requireAdminOf(request, hub.buildCache(request.params.hash));
      await hub.cancelBuild(request.params.hash);
      return reply.redirect(`/ui/builds/${request.params.hash}`, 303);
    },
  );
  app.post(
    '/evaluations/:id/cancel',
    { preValidation: app.csrfProtection, schema: { params: IdParams } },
    async (request, reply) => {
      requireAdminOf(request, hub.evaluationCache(request.params.id));
      const t = tokenOf(request);
      await hub.cancelEvaluation(request.params.id, `cancelled by ${t?.name ?? t?.id ?? 'an administrator'}`);
      return reply.redirect(`/ui/evaluations/${request.params.id}`, 303);
    },
  );
  app.post(
    '/projects/:name/approve',
    {
      preValidation: app.csrfProtection,
      schema: { params: NameParams, body: Type.Object({ pr: Type.Integer({ minimum: 1 }), _csrf: Type.String() }) },
    },
    async (request, reply) => {
      requireAdminOf(request, hub.projectCache(request.params.name));
      const t = tokenOf(request);
      const e = forge.approve(request.params.name, request.body.pr, t?.name ?? t?.id ?? 'admin');
      return reply.redirect(`/ui/evaluations/${e.id}`, 303);
    },
  );
  app.post(
    '/projects/:name/trigger',
    { preValidation: app.csrfProtection, schema: { params: NameParams } },
    async (request, reply) => {
      const name = request.params.name;
      const t = tokenOf(request);
      if (!pa.canTrigger(t, name, hub.projectCache(name)))
        throw new NarhubError('FORBIDDEN', 'this needs a session that may trigger this project');
      const e = hub.triggerEvaluation(name, { trigger: 'manual', triggeredBy: t?.name ?? t?.id });
      return reply.redirect(`/ui/evaluations/${e.id}`, 303);
    },
  );
}

/** The last LOG_TAIL_BYTES of a build's log (stored or live so far), read as a stream. */
async function logTail(hub: Hub, drvHash: string): Promise<{ text: string; truncated: boolean } | null> {
  const log = await hub.log(drvHash).catch(() => ({ kind: 'none' as const }));
  if (log.kind === 'none') return null;
  if (log.kind === 'live') {
    const truncated = log.text.length > LOG_TAIL_BYTES;
    return { text: truncated ? log.text.slice(-LOG_TAIL_BYTES) : log.text, truncated };
  }
  let tail = Buffer.alloc(0);
  let truncated = false;
  for await (const chunk of log.stream) {
    tail = Buffer.concat([tail, chunk as Buffer]);
    if (tail.length > 2 * LOG_TAIL_BYTES) {
      tail = tail.subarray(tail.length - LOG_TAIL_BYTES);
      truncated = true;
    }
  }
  if (tail.length > LOG_TAIL_BYTES) {
    tail = tail.subarray(tail.length - LOG_TAIL_BYTES);
    truncated = true;
  }
  return { text: tail.toString('utf8'), truncated };
}
