import cookie from '@fastify/cookie';
import csrf from '@fastify/csrf-protection';
import formbody from '@fastify/formbody';
import { Type, TypeBoxValidatorCompiler, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { VNode } from 'preact';
import { renderToString } from 'preact-render-to-string';
import { isNarhubError, NarhubError } from '../../errors.js';
import type { CacheService } from '../../cache/cache-service.js';
import type { TokenRow } from '../../cache/tokens.js';
import type { Forge } from '../../forge/forge-service.js';
import type { Hub } from '../../hub/hub-service.js';
import { transitionOf } from '../../hub/records.js';
import type { BuildView } from '../../hub/views.js';
import { createHubVisibility } from '../hub-visibility.js';
import type { ProjectAccess } from '../project-access.js';
import { SCRIPT, STYLE } from './assets.js';
import {
  BuildPage,
  CachePage,
  CachesPage,
  EvaluationPage,
  IndexPage,
  LoginPage,
  MessagePage,
  PathPage,
  ProjectPage,
  QueuesPage,
  SpokesPage,
  type Viewer,
} from './pages.js';

export interface UiOptions {
  hub: Hub;
  forge: Forge;
  service: CacheService;
  projectAccess: ProjectAccess;
  /** Base URL the server is reached at (substituter lines); known once it listens. */
  publicUrl: () => string;
}

const SESSION_COOKIE = 'narhub_session';
const SESSION_TTL_MS = 7 * 86_400_000;
const LOG_TAIL_BYTES = 64 * 1024;
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 63 }) });
const IdParams = Type.Object({ id: Type.Integer({ minimum: 1 }) });
const HashParams = Type.Object({ hash: Type.String({ pattern: '^[0-9a-df-np-sv-z]{32}$' }) });
const PathParams = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 63 }),
  hash: Type.String({ pattern: '^[0-9a-df-np-sv-z]{32}$' }),
});

/**
 * The web UI under /ui/: server-rendered pages (preact JSX, escaped by construction) that read
 * without JavaScript, live updates over SSE where it runs, a token login that sets an HttpOnly
 * SameSite session cookie, and admin actions (restart, cancel, approve, trigger) as POSTs with a
 * CSRF token. What a visitor may see follows the API's rule: a project, its evaluations and
 * builds are visible like the cache it builds into; without the right, a page is "not found".
 */
export const uiRoutes: FastifyPluginAsyncTypebox<UiOptions> = async (app, opts) => {
  const { hub, forge, service, projectAccess: pa } = opts;
  const visible = createHubVisibility(hub, pa);
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  await app.register(cookie);
  await app.register(formbody, { bodyLimit: 16 * 1024 });
  await app.register(csrf, {
    sessionPlugin: '@fastify/cookie',
    cookieKey: 'narhub_csrf',
    cookieOpts: { path: '/ui', httpOnly: true, sameSite: 'strict' },
  });
  const streams = new Set<AbortController>();
  app.addHook('preClose', async () => {
    for (const s of streams) s.abort();
  });

  const tokenOf = (request: FastifyRequest): TokenRow | undefined =>
    service.sessions.token(request.cookies[SESSION_COOKIE]);
  const viewerOf = (request: FastifyRequest, reply: FastifyReply): Viewer => {
    const t = tokenOf(request);
    return { who: t ? (t.name ?? t.id) : null, csrf: reply.generateCsrf() };
  };
  const html = (reply: FastifyReply, page: VNode, status = 200) =>
    reply
      .code(status)
      .header('cache-control', 'no-store')
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'same-origin')
      .type('text/html; charset=utf-8')
      .send(`<!doctype html>${renderToString(page)}`);
  /** Not readable reads as not there: a private project stays invisible. */
  const hidden = (what: string) => new NarhubError('NOT_FOUND', `no ${what} here${''}`);
  const readable = (request: FastifyRequest, cache: string) => pa.canRead(tokenOf(request), cache);
  const requireAdminOf = (request: FastifyRequest, cache: string) => {
    if (!pa.canAdmin(tokenOf(request), cache)) throw new NarhubError('FORBIDDEN', 'this needs an admin session');
  };

  app.setErrorHandler((err: Error, request, reply) => {
    const code = isNarhubError(err) ? err.code : 'INTERNAL';
    const status =
      code === 'NOT_FOUND' || code === 'CACHE_NOT_FOUND'
        ? 404
        : code === 'FORBIDDEN' || (err as { statusCode?: number }).statusCode === 403
          ? 403
          : code === 'BAD_REQUEST' || (err as { statusCode?: number }).statusCode === 400
            ? 400
            : code === 'UNAVAILABLE'
              ? 503
              : code === 'UNAUTHORIZED'
                ? 401
                : 500;
    if (status === 500) request.log.error({ err }, 'UI page failed');
    const message = status === 500 ? 'Something went wrong; it was logged.' : err.message;
    return html(
      reply,
      <MessagePage
        viewer={viewerOf(request, reply)}
        title={status === 404 ? 'Not found' : status === 401 ? 'Log in' : 'Refused'}
        message={message}
      />,
      status,
    );
  });

  app.get('/assets/style.css', async (_r, reply) =>
    reply.type('text/css; charset=utf-8').header('cache-control', 'public, max-age=300').send(STYLE),
  );
  app.get('/assets/live.js', async (_r, reply) =>
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'public, max-age=300').send(SCRIPT),
  );

  // Login and logout.

  app.get('/login', async (request, reply) => html(reply, <LoginPage viewer={viewerOf(request, reply)} />));
  app.post(
    '/login',
    {
      preValidation: app.csrfProtection,
      schema: { body: Type.Object({ token: Type.String({ maxLength: 300 }), _csrf: Type.String() }) },
    },
    async (request, reply) => {
      const session = service.sessions.login(request.body.token.trim(), SESSION_TTL_MS);
      if (!session)
        return html(
          reply,
          <LoginPage viewer={viewerOf(request, reply)} error="That token is unknown, expired or revoked." />,
          401,
        );
      reply.setCookie(SESSION_COOKIE, session.secret, {
        path: '/ui',
        httpOnly: true,
        sameSite: 'strict',
        secure: opts.publicUrl().startsWith('https:'),
        maxAge: SESSION_TTL_MS / 1000,
      });
      return reply.redirect('/ui/', 303);
    },
  );
  app.post('/logout', { preValidation: app.csrfProtection }, async (request, reply) => {
    service.sessions.logout(request.cookies[SESSION_COOKIE]);
    reply.clearCookie(SESSION_COOKIE, { path: '/ui' });
    return reply.redirect('/ui/', 303);
  });

  // Pages.

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
    const res = sse(request, reply);
    const controller = new AbortController();
    streams.add(controller);
    res.on('close', () => controller.abort());
    let last = '';
    try {
      while (!controller.signal.aborted) {
        const e = await hub.evaluation(id);
        const fp = JSON.stringify([e.status, e.builds, (e.jobs ?? []).map((j) => j.status)]);
        if (last !== '' && fp !== last) res.write('event: changed\ndata: \n\n');
        last = fp;
        if (!['pending', 'evaluating', 'building'].includes(e.status)) {
          res.write('event: end\ndata: \n\n');
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
        substituter={`${opts.publicUrl()}/${b.cache}`}
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
    const res = sse(request, reply);
    const controller = new AbortController();
    streams.add(controller);
    res.on('close', () => controller.abort());
    const send = (event: string, data: string) =>
      res.write(
        `event: ${event}\n${data
          .split('\n')
          .map((l) => `data: ${l}`)
          .join('\n')}\n\n`,
      );
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

  app.get('/caches', async (request, reply) => {
    const caches = service.registry
      .list()
      .filter((c) => readable(request, c.name))
      .map((c) => ({ name: c.name, private: c.private, summary: service.browser.summary(c.id) }));
    return html(reply, <CachesPage viewer={viewerOf(request, reply)} caches={caches} />);
  });

  const cacheOf = (request: FastifyRequest, name: string) => {
    const c = service.registry.get(name);
    if (!c || !readable(request, name)) throw hidden('cache');
    return c;
  };

  app.get(
    '/caches/:name',
    { schema: { params: NameParams, querystring: Type.Object({ q: Type.Optional(Type.String({ maxLength: 200 })) }) } },
    async (request, reply) => {
      const c = cacheOf(request, request.params.name);
      const q = request.query.q ?? '';
      return html(
        reply,
        <CachePage
          viewer={viewerOf(request, reply)}
          name={c.name}
          summary={service.browser.summary(c.id)}
          substituter={`${opts.publicUrl()}/${c.name}`}
          publicKeys={service.registry.publicKeys(c)}
          recent={service.browser.recent(c.id, 20)}
          q={q}
          found={q ? service.browser.search(c.id, q) : null}
        />,
      );
    },
  );

  app.get('/caches/:name/paths/:hash', { schema: { params: PathParams } }, async (request, reply) => {
    const c = cacheOf(request, request.params.name);
    const path = service.browser.path(c.id, request.params.hash);
    if (!path) throw new NarhubError('NOT_FOUND', `no path ${request.params.hash} in cache ${c.name}`);
    return html(reply, <PathPage viewer={viewerOf(request, reply)} cache={c.name} path={path} />);
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
};

function sse(request: FastifyRequest, reply: FastifyReply) {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  res.on('close', () => clearInterval(keepAlive));
  request.raw.on('close', () => clearInterval(keepAlive));
  return res;
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
