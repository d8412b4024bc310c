import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { NarhubError } from '../../errors.js';
import type { CacheService } from '../../cache/cache-service.js';
import type { Hub } from '../../hub/hub-service.js';
import type { Access } from '../access.js';
import { openEventStream } from '../event-stream.js';
import { createHubVisibility } from '../hub-visibility.js';
import type { ProjectAccess } from '../project-access.js';
import type { TypeboxApp } from '../typebox-app.js';

export interface HubApiOptions {
  hub: Hub;
  service: CacheService;
  access: Access;
  projectAccess: ProjectAccess;
}

const AttrSet = Type.Union([Type.Literal('checks'), Type.Literal('packages'), Type.Literal('nixosConfigurations')]);
const Priority = Type.Integer({ minimum: -1000, maximum: 1000 });
const ProjectBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 63 }),
    flake: Type.String({ minLength: 1, maxLength: 2000 }),
    ref: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Null()])),
    systems: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 16 })),
    attrs: Type.Optional(Type.Array(AttrSet, { minItems: 1, maxItems: 3 })),
    cache: Type.String({ minLength: 1, maxLength: 63 }),
    priority: Type.Optional(Priority),
    github: Type.Optional(
      Type.Union([Type.String({ minLength: 3, maxLength: 201, description: 'OWNER/REPO on the forge' }), Type.Null()]),
    ),
    forkPolicy: Type.Optional(
      Type.Union([Type.Literal('collaborators'), Type.Literal('users'), Type.Literal('everyone')], {
        description: "Whose pull requests from forks run without an admin's approval",
      }),
    ),
    forkUsers: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 50 }), { maxItems: 200 })),
    pollInterval: Type.Optional(
      Type.Union([
        Type.Integer({ minimum: 10, maximum: 86_400, description: 'Seconds between git ls-remote polls' }),
        Type.Null(),
      ]),
    ),
    notifyUrl: Type.Optional(
      Type.Union([Type.String({ minLength: 8, maxLength: 2000, description: 'Outgoing webhook' }), Type.Null()]),
    ),
  },
  { additionalProperties: false },
);
const ProjectPatch = Type.Partial(Type.Omit(ProjectBody, ['name']), { additionalProperties: false });
const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 63 }) });
const EvalBody = Type.Object(
  { ref: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })), priority: Type.Optional(Priority) },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.Integer({ minimum: 1 }) });
const DrvParams = Type.Object({ drv: Type.String({ minLength: 32, maxLength: 300 }) });
const Limit = Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 }));
const BuildsQuery = Type.Object(
  {
    drvPath: Type.Optional(Type.String({ maxLength: 300 })),
    outPath: Type.Optional(Type.String({ maxLength: 300 })),
    status: Type.Optional(
      Type.Union([
        Type.Literal('queued'),
        Type.Literal('running'),
        Type.Literal('succeeded'),
        Type.Literal('failed'),
        Type.Literal('dependency-failed'),
        Type.Literal('cancelled'),
      ]),
    ),
    project: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
    branch: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'A jobset: branch or pr-N' })),
    attr: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
    spoke: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    limit: Limit,
  },
  { additionalProperties: false },
);
const LogQuery = Type.Object({ follow: Type.Optional(Type.Boolean()) }, { additionalProperties: false });

const EvaluationsQuery = Type.Object(
  { limit: Limit, jobset: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) },
  { additionalProperties: false },
);

/**
 * The hub's part of `/api/v1` (projects, evaluations, builds, logs, spokes, queues), beside the
 * cache's own routes there. Every route has a TypeBox schema; errors are `{ "code", "message" }`.
 * Writes need admin rights on the cache the project builds into; reads need read rights there
 * (anyone may read what belongs to a public cache). Each group of routes lives in an
 * encapsulated context whose `preHandler` checks the rights it needs on the cache its resource
 * belongs to; lists are filtered to what the caller may read.
 */
export const hubApiRoutes: FastifyPluginAsyncTypebox<HubApiOptions> = async (app, opts) => {
  const { hub, access, projectAccess } = opts;
  const visible = createHubVisibility(hub, projectAccess);
  const presented = (request: FastifyRequest) => request.headers.authorization !== undefined;
  const streams = new Set<AbortController>();

  // Live logs hold their connection open: end them first, or closing the server would wait on them.
  app.addHook('preClose', async () => {
    for (const s of streams) s.abort();
  });

  const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store');
  const params = (request: FastifyRequest) => request.params as { name: string; id: number; drv: string };
  const projectCache = (request: FastifyRequest) => hub.projectCache(params(request).name);
  const evaluationCache = (request: FastifyRequest) => hub.evaluationCache(params(request).id);
  const buildCache = (request: FastifyRequest) => hub.buildCache(params(request).drv);

  // Lists, filtered to what the caller may read

  app.get('/projects', async (request, reply) => {
    return noStore(reply).send({ projects: hub.listProjects().filter((p) => access.canRead(request, p.cache)) });
  });

  app.get('/builds', { schema: { querystring: BuildsQuery } }, async (request, reply) => {
    const q = request.query;
    let found;
    if (q.drvPath !== undefined) {
      const drvPath = q.drvPath;
      projectAccess.readableCache(access.tokenOf(request), presented(request), `build ${drvPath}`, () =>
        hub.buildCache(drvPath),
      );
      const b = await hub.build(drvPath);
      found = [{ ...b, requestedBy: visible.requesters(access.tokenOf(request), b.requestedBy) }];
    } else if (q.outPath !== undefined) {
      found = await hub.buildsByOutput(q.outPath);
    } else {
      found = await hub.filterBuilds({ ...q, limit: q.limit ?? 100 });
    }
    return noStore(reply).send({ builds: found.filter((b) => access.canRead(request, b.cache)) });
  });

  // Creating a project: admin rights on the cache it will build into (named in the body).
  await app.register(async (create: TypeboxApp) => {
    create.addHook(
      'preHandler',
      access.cacheHook('admin', (request) => (request.body as { cache: string }).cache),
    );
    create.post('/projects', { schema: { body: ProjectBody } }, async (request, reply) => {
      const { name, ...input } = request.body;
      return noStore(reply).code(201).send(hub.createProject(name, input));
    });
  });

  // Reading a project, an evaluation, a build: read rights on its cache.
  await app.register(async (read: TypeboxApp) => {
    read.addHook('preHandler', async (request) => {
      const { name, id, drv } = params(request);
      const [what, cacheOf] =
        name !== undefined
          ? [`project ${name}`, () => projectCache(request)]
          : id !== undefined
            ? [`evaluation ${id}`, () => evaluationCache(request)]
            : [`build ${drv}`, () => buildCache(request)];
      const cache = projectAccess.readableCache(access.tokenOf(request), presented(request), what, cacheOf);
      request.cache = access.authorizeRequest(request, cache, 'read');
    });

    read.get('/projects/:name', { schema: { params: NameParams } }, async (request, reply) => {
      return noStore(reply).send(hub.project(request.params.name));
    });

    read.get(
      '/projects/:name/evaluations',
      { schema: { params: NameParams, querystring: EvaluationsQuery } },
      async (request, reply) => {
        const { limit, jobset } = request.query;
        return noStore(reply).send({ evaluations: hub.evaluations(request.params.name, limit ?? 20, jobset) });
      },
    );

    read.get('/evaluations/:id', { schema: { params: IdParams } }, async (request, reply) => {
      return noStore(reply).send(await hub.evaluation(request.params.id));
    });

    read.get('/builds/:drv', { schema: { params: DrvParams } }, async (request, reply) => {
      const b = await hub.build(request.params.drv);
      return noStore(reply).send({ ...b, requestedBy: visible.requesters(access.tokenOf(request), b.requestedBy) });
    });

    // The log: stored in the cache once the build ended; live (Server-Sent Events) while it runs.
    read.get('/builds/:drv/log', { schema: { params: DrvParams, querystring: LogQuery } }, async (request, reply) => {
      const key = request.params.drv;
      const sse = request.query.follow === true || (request.headers.accept ?? '').includes('text/event-stream');
      if (!sse) {
        const log = await hub.log(key);
        if (log.kind === 'none') throw new NarhubError('NOT_FOUND', `no log of ${key} yet`);
        if (log.kind === 'stored') return noStore(reply).type(log.contentType).send(log.stream);
        return noStore(reply)
          .header('x-narhub-log', log.eof ? 'complete' : 'partial')
          .type('text/plain; charset=utf-8')
          .send(log.text);
      }
      const stored = await hub.log(key);
      const controller = new AbortController();
      streams.add(controller);
      const { res, send } = openEventStream(reply);
      res.on('close', () => controller.abort());
      try {
        if (stored.kind === 'stored') {
          let text = '';
          for await (const chunk of stored.stream) text += (chunk as Buffer).toString('utf8');
          if (text) send('log', text);
        } else if (hub.buildIsOpen(key) || (stored.kind === 'live' && !stored.eof)) {
          for await (const chunk of hub.followLog(key, controller.signal)) send('log', chunk);
        } else if (stored.kind === 'live') {
          send('log', stored.text);
        }
        if (!controller.signal.aborted) send('end', (await hub.build(key)).status);
      } catch (err) {
        if (!controller.signal.aborted) {
          request.log.warn({ err }, 'live log failed');
          send('error', err instanceof NarhubError && err.code !== 'INTERNAL' ? err.message : 'the log stream failed');
        }
      } finally {
        streams.delete(controller);
        res.end();
      }
    });
  });

  // Changing a project, triggering it, restarting or cancelling a build: admin rights on its cache.
  await app.register(async (admin: TypeboxApp) => {
    admin.addHook('preHandler', async (request) => {
      const { name, id } = params(request);
      const cache =
        name !== undefined ? projectCache(request) : id !== undefined ? evaluationCache(request) : buildCache(request);
      request.cache = access.authorizeRequest(request, cache, 'admin');
    });

    admin.patch('/projects/:name', { schema: { params: NameParams, body: ProjectPatch } }, async (request, reply) => {
      // Moving a project to another cache needs admin rights there too.
      if (request.body.cache !== undefined) access.authorizeRequest(request, request.body.cache, 'admin');
      return noStore(reply).send(hub.updateProject(request.params.name, request.body));
    });

    admin.delete('/projects/:name', { schema: { params: NameParams } }, async (request, reply) => {
      await hub.deleteProject(request.params.name);
      return reply.code(204).send();
    });

    admin.post('/evaluations/:id/cancel', { schema: { params: IdParams } }, async (request, reply) => {
      const t = access.tokenOf(request);
      const by = t?.name ?? t?.id ?? 'an administrator';
      return noStore(reply).send(await hub.cancelEvaluation(request.params.id, `cancelled by ${by}`));
    });

    admin.post('/builds/:drv/restart', { schema: { params: DrvParams } }, async (request, reply) => {
      return noStore(reply).send(await hub.restartBuild(request.params.drv));
    });

    admin.post('/builds/:drv/cancel', { schema: { params: DrvParams } }, async (request, reply) => {
      return noStore(reply).send(await hub.cancelBuild(request.params.drv));
    });
  });

  // Triggering an evaluation: admin rights on the project's cache, or a trigger token for it.
  await app.register(async (trigger: TypeboxApp) => {
    trigger.addHook('preHandler', async (request) => {
      const cache = projectCache(request);
      if (opts.service.tokens.mayTrigger(access.tokenOf(request), params(request).name, cache)) return;
      request.cache = access.authorizeRequest(request, cache, 'admin');
    });

    trigger.post(
      '/projects/:name/evaluations',
      { schema: { params: NameParams, body: Type.Union([EvalBody, Type.Undefined(), Type.Null()]) } },
      async (request, reply) => {
        const t = access.tokenOf(request);
        const e = hub.triggerEvaluation(request.params.name, {
          ref: request.body?.ref,
          priority: request.body?.priority,
          triggeredBy: t?.name ?? t?.id,
        });
        return noStore(reply).code(202).header('location', `/api/v1/evaluations/${e.id}`).send(e);
      },
    );
  });

  // Spokes and queues belong to no project: any valid token may look, and a spoke shows only the
  // builds the caller may read (the others are counted in `hiddenRunning`).
  await app.register(async (tokenHolders: TypeboxApp) => {
    tokenHolders.addHook('preHandler', access.anyTokenHook());

    tokenHolders.get('/spokes', async (request, reply) => {
      return noStore(reply).send({ spokes: visible.spokes(access.tokenOf(request), await hub.spokes()) });
    });

    tokenHolders.get('/queues', async (_request, reply) => {
      return noStore(reply).send({ queues: await hub.queues() });
    });
  });
};
