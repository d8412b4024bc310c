import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { NarhubError } from '../../errors.js';
import type { CacheService } from '../../cache/cache-service.js';
import type { Hub } from '../../hub/hub-service.js';
import type { Access } from '../access.js';

export interface HubApiOptions {
  hub: Hub;
  service: CacheService;
  access: Access;
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
    limit: Limit,
  },
  { additionalProperties: false },
);
const LogQuery = Type.Object({ follow: Type.Optional(Type.Boolean()) }, { additionalProperties: false });

type Req<T extends { Params?: unknown; Body?: unknown; Querystring?: unknown }> = FastifyRequest<{
  Params: T['Params'];
  Body: T['Body'];
  Querystring: T['Querystring'];
}>;

/**
 * The hub's part of `/api/v1` (projects, evaluations, builds, logs, spokes, queues), beside the
 * cache's own routes there. Every route has a JSON schema; errors are `{ "code", "message" }`.
 * Writes need admin rights on the cache the project builds into; reads need read rights there
 * (anyone may read what belongs to a public cache).
 */
export async function hubApiRoutes(app: FastifyInstance, opts: HubApiOptions): Promise<void> {
  const { hub, service, access } = opts;
  const streams = new Set<AbortController>();

  // Validation by the TypeBox schemas themselves: unknown keys are errors (Fastify's default Ajv
  // would drop them silently, so a misspelt setting would be ignored); query strings and path
  // parameters are converted to the schema's types first.
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const checker = TypeCompiler.Compile(schema as TSchema);
    return (data: unknown) => {
      const value = httpPart === 'body' ? data : Value.Convert(schema as TSchema, data);
      if (checker.Check(value)) return { value };
      const first = checker.Errors(value).First();
      const where = `${httpPart}${first?.path ? ` ${first.path.replace(/^\//, '').replaceAll('/', '.')}` : ''}`;
      return { error: new NarhubError('BAD_REQUEST', `${where}: ${first?.message ?? 'invalid'}`) };
    };
  });

  // Live logs hold their connection open: end them first, or closing the server would wait on them.
  app.addHook('preClose', async () => {
    for (const s of streams) s.abort();
  });

  const cacheRow = (name: string) => service.registry.require(name);
  const canRead = (request: FastifyRequest, cache: string): boolean => {
    try {
      access.requireRead(request, cacheRow(cache));
      return true;
    } catch {
      return false;
    }
  };
  const requireAnyToken = (request: FastifyRequest) => {
    if (!access.tokenOf(request)) {
      throw new NarhubError(
        'UNAUTHORIZED',
        request.headers.authorization ? 'the token is unknown, expired or revoked' : 'a token is needed',
      );
    }
  };
  const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store');

  // Projects

  app.get('/projects', async (request, reply) => {
    return noStore(reply).send({ projects: hub.listProjects().filter((p) => canRead(request, p.cache)) });
  });

  app.post(
    '/projects',
    { schema: { body: ProjectBody } },
    async (request: Req<{ Body: Static<typeof ProjectBody> }>, reply) => {
      const { name, ...input } = request.body;
      access.requireAdmin(request, cacheRow(input.cache));
      return noStore(reply).code(201).send(hub.createProject(name, input));
    },
  );

  app.get(
    '/projects/:name',
    { schema: { params: NameParams } },
    async (request: Req<{ Params: Static<typeof NameParams> }>, reply) => {
      access.requireRead(request, cacheRow(hub.projectCache(request.params.name)));
      return noStore(reply).send(hub.project(request.params.name));
    },
  );

  app.patch(
    '/projects/:name',
    { schema: { params: NameParams, body: ProjectPatch } },
    async (request: Req<{ Params: Static<typeof NameParams>; Body: Static<typeof ProjectPatch> }>, reply) => {
      access.requireAdmin(request, cacheRow(hub.projectCache(request.params.name)));
      if (request.body.cache !== undefined) access.requireAdmin(request, cacheRow(request.body.cache));
      return noStore(reply).send(hub.updateProject(request.params.name, request.body));
    },
  );

  app.delete(
    '/projects/:name',
    { schema: { params: NameParams } },
    async (request: Req<{ Params: Static<typeof NameParams> }>, reply) => {
      access.requireAdmin(request, cacheRow(hub.projectCache(request.params.name)));
      await hub.deleteProject(request.params.name);
      return reply.code(204).send();
    },
  );

  // Evaluations

  app.post(
    '/projects/:name/evaluations',
    { schema: { params: NameParams, body: Type.Union([EvalBody, Type.Undefined(), Type.Null()]) } },
    async (
      request: Req<{ Params: Static<typeof NameParams>; Body: Static<typeof EvalBody> | undefined | null }>,
      reply,
    ) => {
      access.requireAdmin(request, cacheRow(hub.projectCache(request.params.name)));
      const e = hub.triggerEvaluation(request.params.name, {
        ref: request.body?.ref,
        priority: request.body?.priority,
      });
      return noStore(reply).code(202).header('location', `/api/v1/evaluations/${e.id}`).send(e);
    },
  );

  app.get(
    '/projects/:name/evaluations',
    { schema: { params: NameParams, querystring: Type.Object({ limit: Limit }, { additionalProperties: false }) } },
    async (request: Req<{ Params: Static<typeof NameParams>; Querystring: { limit?: number } }>, reply) => {
      access.requireRead(request, cacheRow(hub.projectCache(request.params.name)));
      return noStore(reply).send({ evaluations: hub.evaluations(request.params.name, request.query.limit ?? 20) });
    },
  );

  app.get(
    '/evaluations/:id',
    { schema: { params: IdParams } },
    async (request: Req<{ Params: Static<typeof IdParams> }>, reply) => {
      access.requireRead(request, cacheRow(hub.evaluationCache(request.params.id)));
      return noStore(reply).send(await hub.evaluation(request.params.id));
    },
  );

  // Builds: by derivation hash or path, by output path, or by status.

  app.get(
    '/builds',
    { schema: { querystring: BuildsQuery } },
    async (request: Req<{ Querystring: Static<typeof BuildsQuery> }>, reply) => {
      const q = request.query;
      let found;
      if (q.drvPath !== undefined) {
        access.requireRead(request, cacheRow(hub.buildCache(q.drvPath)));
        found = [await hub.build(q.drvPath)];
      } else if (q.outPath !== undefined) {
        found = await hub.buildsByOutput(q.outPath);
      } else {
        found = await hub.builds(q.status, q.limit ?? 100);
      }
      return noStore(reply).send({ builds: found.filter((b) => canRead(request, b.cache)) });
    },
  );

  app.get(
    '/builds/:drv',
    { schema: { params: DrvParams } },
    async (request: Req<{ Params: Static<typeof DrvParams> }>, reply) => {
      access.requireRead(request, cacheRow(hub.buildCache(request.params.drv)));
      return noStore(reply).send(await hub.build(request.params.drv));
    },
  );

  app.post(
    '/builds/:drv/restart',
    { schema: { params: DrvParams } },
    async (request: Req<{ Params: Static<typeof DrvParams> }>, reply) => {
      access.requireAdmin(request, cacheRow(hub.buildCache(request.params.drv)));
      return noStore(reply).send(await hub.restartBuild(request.params.drv));
    },
  );

  app.post(
    '/builds/:drv/cancel',
    { schema: { params: DrvParams } },
    async (request: Req<{ Params: Static<typeof DrvParams> }>, reply) => {
      access.requireAdmin(request, cacheRow(hub.buildCache(request.params.drv)));
      return noStore(reply).send(await hub.cancelBuild(request.params.drv));
    },
  );

  // The log: stored in the cache once the build ended; live (Server-Sent Events) while it runs.
  app.get(
    '/builds/:drv/log',
    { schema: { params: DrvParams, querystring: LogQuery } },
    async (request: Req<{ Params: Static<typeof DrvParams>; Querystring: Static<typeof LogQuery> }>, reply) => {
      const key = request.params.drv;
      access.requireRead(request, cacheRow(hub.buildCache(key)));
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
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      const send = (event: string, data: string) => {
        res.write(
          `event: ${event}\n${data
            .split('\n')
            .map((l) => `data: ${l}`)
            .join('\n')}\n\n`,
        );
      };
      const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
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
        clearInterval(keepAlive);
        streams.delete(controller);
        res.end();
      }
    },
  );

  // Spokes and queues: any valid token may look.

  app.get('/spokes', async (request, reply) => {
    requireAnyToken(request);
    return noStore(reply).send({ spokes: await hub.spokes() });
  });

  app.get('/queues', async (request, reply) => {
    requireAnyToken(request);
    return noStore(reply).send({ queues: await hub.queues() });
  });
}
