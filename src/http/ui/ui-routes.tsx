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
import type { ProjectAccess } from '../project-access.js';
import { SCRIPT, STYLE } from './assets.js';
import { hubPages, type UiContext } from './hub-pages.js';
import { CachePage, CachesPage, LoginPage, MessagePage, PathPage, type Viewer } from './pages.js';

export interface UiOptions {
  /** The build hub and its forge, when narhub runs one (with Redis): without, the UI shows the caches. */
  hub?: Hub | undefined;
  forge?: Forge | undefined;
  service: CacheService;
  projectAccess: ProjectAccess;
  /** Base URL the server is reached at (substituter lines); known once it listens. */
  publicUrl: () => string;
}

const SESSION_COOKIE = 'narhub_session';
const SESSION_TTL_MS = 7 * 86_400_000;
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
 * The caches' pages and the login work without a hub; the hub's pages (`hub-pages.tsx`) come
 * with one.
 */
export const uiRoutes: FastifyPluginAsyncTypebox<UiOptions> = async (app, opts) => {
  const { hub, forge, service, projectAccess: pa } = opts;
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
    return { who: t ? (t.name ?? t.id) : null, csrf: reply.generateCsrf(), hub: hub !== undefined };
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

  const ui: UiContext = {
    html,
    viewerOf,
    tokenOf,
    readable,
    hidden,
    requireAdminOf,
    streams,
    access: pa,
    publicUrl: opts.publicUrl,
  };
  if (hub && forge) await hubPages(app, ui, hub, forge);
  else app.get('/', async (_request, reply) => reply.redirect('/ui/caches', 302));
};
