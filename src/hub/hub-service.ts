import { pipeline, type Readable } from 'node:stream';
import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import { NarhubError } from '../errors.js';
import type { CacheService } from '../cache/cache-service.js';
import { createBuildsRepo, type BuildRow, type BuildStatus } from '../db/builds-repo.js';
import { createCachesRepo } from '../db/caches-repo.js';
import { createEvaluationsRepo, type EvaluationTrigger } from '../db/evaluations-repo.js';
import { createHistoryRepo } from '../db/history-repo.js';
import { createHubStateRepo } from '../db/hub-state-repo.js';
import { createProjectsRepo } from '../db/projects-repo.js';
import type { HubConfig } from '../config/schema.js';
import { compressionOfEncoding, createDecompressor } from '../io/compression.js';
import { DEFAULT_STORE_DIR, isDerivationPath, isValidHashPart, parseStorePathBasename } from '../nix/store-path.js';
import type { SpokeHeartbeat } from '../protocol/build-jobs.js';
import { createBuildGraph, type BuildGraph } from './build-graph.js';
import { createCanceller, type Canceller } from './cancel.js';
import { createDispatcher, type Dispatcher } from './dispatcher.js';
import { createEvaluationRunner, type EvaluationRunner } from './evaluation-runner.js';
import { DrvTexts } from './drv-texts.js';
import type { EvaluationSource } from './evaluation-source.js';
import { createEventConsumer, handleBuildEvent, type EventConsumer } from './event-consumer.js';
import { createJobData } from './job-data.js';
import { followLogStream, readLogStream } from './logs.js';
import { assertValidProjectName, mergeInput, projectFields, requireProject, type ProjectInput } from './projects.js';
import { reconcile } from './reconciler.js';
import { attrHistoryView, requesterView, type AttrHistoryView, type RequesterView } from './records.js';
import { connectRedis, type HubRedis, type RedisState } from './redis.js';
import { createSpokeDirectory } from './spokes.js';
import {
  createBuildViews,
  evaluationView,
  jobView,
  projectView,
  queueView,
  spokeView,
  type BuildView,
  type EvaluationView,
  type ProjectView,
  type QueueView,
  type SpokeView,
} from './views.js';

export interface HubOptions {
  db: Database;
  cache: CacheService;
  config: HubConfig;
  redisUrl: string;
  /** Largest NAR accepted (the server's `maxNarSize`), for the derivations the hub uploads. */
  maxNarSize?: number;
  logger: Logger;
  /** Environment of the hub's Nix commands (tests isolate NIX_CONF_DIR this way); process.env by default. */
  nixEnv?: NodeJS.ProcessEnv;
  /** Seconds finished jobs stay in Redis for a restarted hub to read. Default: one day. */
  keepFinishedSeconds?: number;
  /** Where evaluations get their jobs and derivation graph: Nix by default (benches stand in a synthetic graph). */
  evaluationSource?: EvaluationSource;
}

export interface TriggerOptions {
  ref?: string | undefined;
  priority?: number | undefined;
  commit?: string | undefined;
  /** Default: the branch; null for a bare commit. */
  jobset?: string | null | undefined;
  trigger?: EvaluationTrigger | undefined;
  prNumber?: number | undefined;
  triggeredBy?: string | undefined;
}

export interface BuildsQuery {
  status?: BuildStatus | undefined;
  project?: string | undefined;
  /** A jobset: branch or pr-N. */
  branch?: string | undefined;
  attr?: string | undefined;
  spoke?: string | undefined;
  limit: number;
}

export type LogSource =
  | { kind: 'stored'; stream: Readable; contentType: string }
  | { kind: 'live'; text: string; eof: boolean }
  | { kind: 'none' };

/** The drv hash named by a hash, a .drv basename or a full .drv path. */
function drvHashOf(key: string): string {
  const name = key.startsWith(`${DEFAULT_STORE_DIR}/`) ? key.slice(DEFAULT_STORE_DIR.length + 1) : key;
  if (isValidHashPart(name)) return name;
  try {
    const path = parseStorePathBasename(name);
    if (isDerivationPath(path)) return path.hashPart;
  } catch {
    // not a store path at all: said below
  }
  throw new NarhubError('STORE_PATH_INVALID', `${JSON.stringify(key.slice(0, 200))} is not a derivation hash or path`);
}

/**
 * The build hub: projects, evaluations and the builds they need, dispatched to spokes through
 * BullMQ. Everything the HTTP API and the CLI need goes through this facade; `start` connects to
 * Redis, resumes after a restart (events from the last processed id, reconciliation of open
 * builds with their jobs, interrupted evaluations run again), and `close` drains it.
 */
export function createHub(opts: HubOptions) {
  const { db, cache, config, logger } = opts;
  const projects = createProjectsRepo(db);
  const evaluations = createEvaluationsRepo(db);
  const builds = createBuildsRepo(db);
  const caches = createCachesRepo(db);
  const state = createHubStateRepo(db);
  const history = createHistoryRepo(db);

  let redis: HubRedis | undefined;
  let dispatcher: Dispatcher | undefined;
  let events: EventConsumer | undefined;
  let graph: BuildGraph | undefined;
  let canceller: Canceller | undefined;
  let runner: EvaluationRunner | undefined;
  let spokeDirectory: ReturnType<typeof createSpokeDirectory> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;

  function started() {
    if (!redis || !dispatcher || !graph || !canceller || !runner || !spokeDirectory || closing) {
      throw new NarhubError('UNAVAILABLE', 'the build hub is not running');
    }
    return { redis, dispatcher, graph, canceller, runner, spokeDirectory };
  }

  const drvTexts = new DrvTexts();
  const jobData = createJobData({ builds, caches, config, drvTexts });
  const viewOf = createBuildViews({ builds, spokes: listSpokes });

  /** Connected spokes; none while Redis is away (views then say so rather than fail). */
  async function listSpokes(): Promise<SpokeHeartbeat[]> {
    if (!spokeDirectory) return [];
    try {
      return await spokeDirectory.list();
    } catch {
      return [];
    }
  }

  function requireBuild(key: string): BuildRow {
    const b = builds.get(drvHashOf(key));
    if (!b) throw new NarhubError('NOT_FOUND', `no build of ${key}`);
    return b;
  }

  /**
   * Ends live evaluations as cancelled. One still being evaluated stops there (no build it had
   * not recorded yet is started); the builds they recorded are cancelled unless another live
   * evaluation needs them.
   */
  async function cancelEvaluations(ids: number[], reason: string): Promise<void> {
    const { canceller: c, runner: r } = started();
    const mine = new Set<string>();
    for (const id of ids) {
      for (const h of evaluations.builds(id)) mine.add(h);
      evaluations.finish(id, 'cancelled', reason);
      r.cancel(id);
    }
    for (const h of mine)
      if (evaluations.liveNeeding(h).length === 0) await c.cancelBuild(h, reason).catch(() => false);
  }

  return {
    get running(): boolean {
      return redis !== undefined && !closing;
    },

    /**
     * Starts the hub. Redis need not be there: the cache serves without it, and the hub resumes
     * (queues announced, open builds reconciled with their jobs) each time its connection becomes
     * ready, at the start and after every outage. Resolves once that first happened, or once
     * Redis has refused the first connection.
     */
    async start(): Promise<void> {
      const log = logger.child({ component: 'hub' });
      const r = connectRedis(opts.redisUrl, log);
      redis = r;
      const ev = createEventConsumer({
        redis: r,
        state,
        logger: log,
        handle: (_queue, e) =>
          graph && dispatcher ? handleBuildEvent({ builds, graph, dispatcher }, e) : Promise.resolve(),
      });
      events = ev;
      const d = createDispatcher({
        redis: r,
        attempts: config.buildAttempts,
        keepFinishedSeconds: opts.keepFinishedSeconds ?? 86_400,
        onQueue: (q) => ev.watch(q),
      });
      dispatcher = d;
      const g = createBuildGraph({ db, builds, evaluations, dispatcher: d, logger: log, jobData });
      graph = g;
      canceller = createCanceller({ builds, evaluations, dispatcher: d, graph: g, redis: r, logger: log });
      spokeDirectory = createSpokeDirectory(r.command);
      runner = createEvaluationRunner({
        db,
        config,
        projects,
        evaluations,
        builds,
        caches,
        graph: g,
        canceller,
        dispatcher: d,
        logger: log,
        cache,
        maxNarSize: opts.maxNarSize ?? 64 * 1024 ** 3,
        nixEnv: opts.nixEnv,
        drvTexts,
        source: opts.evaluationSource,
      });

      // Resume: consume every queue's events from where the last run stopped, tell spokes about
      // the queues, then compare open builds with their jobs. Once per connection, one at a time.
      let resuming: Promise<void> | undefined;
      let again = false;
      const resume = async (): Promise<void> => {
        const open = builds.open();
        for (const q of new Set([...ev.knownQueues(), ...open.map((b) => b.queue)])) await d.use(q);
        await d.announce();
        await reconcile({ builds, dispatcher: d, graph: g, logger: log });
      };
      const resumeNow = (): Promise<void> => {
        if (resuming) {
          again = true;
          return resuming;
        }
        resuming = resume()
          .catch((err: unknown) => {
            if (!closing) log.warn({ err }, 'resuming the hub failed; it tries again when Redis is ready');
          })
          .finally(() => {
            resuming = undefined;
            if (again && !closing && r.state() === 'ok') {
              again = false;
              void resumeNow();
            }
          });
        return resuming;
      };
      const firstResume = new Promise<void>((resolve) => {
        let first = true;
        r.onReady(() => {
          if (!closing) void resumeNow().finally(resolve);
          first = false;
        });
        r.command.once('error', () => {
          if (!first) return;
          log.warn('Redis is not reachable: the cache serves, the hub resumes when Redis is back');
          resolve();
        });
      });

      // Evaluations need no Redis until their builds are enqueued, which the sweep below retries.
      for (const e of evaluations.live()) {
        if (e.status === 'building') g.checkEvaluation(e.id);
        else runner.submit(e.id);
      }
      // A safety net for jobs whose add failed (Redis away, an earlier attempt still shutting down).
      timer = setInterval(() => {
        if (r.state() !== 'ok') return;
        // Results the event streams dropped before the hub read them: only the jobs still know.
        void ev
          .gaps()
          .then((queues) => {
            if (queues.length === 0) return;
            log.warn({ queues }, 'events were trimmed before the hub read them; reconciling open builds');
            return resumeNow();
          })
          .catch((err: unknown) => log.warn({ err }, 'cannot check the event streams'));
        // Hashes only: every open row, parsed, every 10 s costs seconds of CPU with 100,000 queued.
        const stuck = builds.unenqueued();
        if (stuck.length > 0)
          void g.advance(stuck).catch((err: unknown) => log.warn({ err }, 'retrying builds failed'));
      }, 10_000);
      timer.unref();
      await firstResume;
      log.info(
        { redis: opts.redisUrl.replace(/\/\/[^@]*@/, '//…@'), redisState: r.state(), openBuilds: builds.open().length },
        'build hub started',
      );
    },

    /** The hub's part of `/healthz`: whether its Redis connection is up. */
    health(): { redis: RedisState | 'stopped' } {
      return { redis: redis && !closing ? redis.state() : 'stopped' };
    },

    /** Stops evaluations, event consumers and queues, then Redis. Idempotent. */
    close(): Promise<void> {
      closing ??= (async () => {
        if (timer) clearInterval(timer);
        await runner?.close();
        await events?.close();
        await dispatcher?.close();
        await redis?.close();
      })();
      return closing;
    },

    // Projects

    listProjects(): ProjectView[] {
      return projects.list().map(projectView);
    },
    project(name: string): ProjectView {
      return projectView(requireProject(projects, name));
    },
    /** The cache a project builds into (for access checks). */
    projectCache(name: string): string {
      return requireProject(projects, name).cacheName;
    },
    createProject(name: string, input: ProjectInput): ProjectView {
      assertValidProjectName(name);
      if (projects.get(name)) throw new NarhubError('BAD_REQUEST', `project ${name} already exists`);
      const cacheRow = cache.registry.require(input.cache);
      return projectView(projects.insert(name, projectFields(input, cacheRow.id)));
    },
    updateProject(name: string, input: Partial<ProjectInput>): ProjectView {
      const p = requireProject(projects, name);
      const merged = mergeInput(p, input);
      const cacheRow = cache.registry.require(merged.cache);
      return projectView(projects.update(p.id, projectFields(merged, cacheRow.id)));
    },
    /** Deletes a project and its evaluations; builds only they needed are cancelled. */
    async deleteProject(name: string): Promise<void> {
      const p = requireProject(projects, name);
      const mine = new Set<string>();
      for (const e of evaluations.ofProject(p.id, 1_000_000))
        if (['pending', 'evaluating', 'building'].includes(e.status))
          for (const h of evaluations.builds(e.id)) mine.add(h);
      projects.delete(p.id);
      if (!canceller) return;
      for (const h of mine)
        if (evaluations.keptNeeding(h).length === 0)
          await canceller.cancelBuild(h, `project ${name} was deleted`).catch(() => false);
    },

    // Evaluations

    /**
     * Starts an evaluation. `ref` is a branch or ref (default: the project's); a full commit id
     * there, or `commit`, evaluates that commit, recorded against it. The jobset (which older
     * evaluations a new one supersedes) is the branch, `pr-N`, or none for a bare commit.
     */
    triggerEvaluation(projectName: string, o: TriggerOptions = {}): EvaluationView {
      const { runner: r } = started();
      const p = requireProject(projects, projectName);
      const bareCommit = o.commit === undefined && o.ref !== undefined && /^[0-9a-f]{40}$/.test(o.ref);
      const commit = o.commit ?? (bareCommit ? o.ref! : null);
      const ref = bareCommit ? null : (o.ref ?? p.ref);
      if ((ref || commit) && p.flake.startsWith('path:'))
        throw new NarhubError('BAD_REQUEST', 'a path: flake has no branches or refs');
      if (commit !== null && !/^[0-9a-f]{40}$/.test(commit))
        throw new NarhubError('BAD_REQUEST', 'a commit is 40 hexadecimal digits');
      const priority = o.priority ?? p.priority;
      if (!Number.isInteger(priority) || priority < -1000 || priority > 1000)
        throw new NarhubError('BAD_REQUEST', 'priority must be a whole number from -1000 to 1000');
      const jobset = o.jobset !== undefined ? o.jobset : bareCommit ? null : (ref ?? 'default');
      const e = evaluations.insert({
        projectId: p.id,
        ref: ref ?? null,
        flakeUrl: p.flake,
        priority,
        jobset,
        commitSha: commit,
        trigger: o.trigger ?? 'manual',
        prNumber: o.prNumber ?? null,
        triggeredBy: o.triggeredBy ?? null,
      });
      r.submit(e.id);
      return evaluationView(e, p.name, {});
    },
    /**
     * Ends the live evaluations of a jobset (a closed pull request): they are cancelled, and so
     * are the builds that no other live evaluation needs.
     */
    async cancelJobset(projectName: string, jobset: string, reason: string): Promise<number[]> {
      const p = requireProject(projects, projectName);
      const ended = evaluations.liveOfJobset(p.id, jobset);
      await cancelEvaluations(
        ended.map((e) => e.id),
        reason,
      );
      return ended.map((e) => e.id);
    },
    /** Cancels one live evaluation (its builds that no other live evaluation needs with it). */
    async cancelEvaluation(id: number, reason: string): Promise<EvaluationView> {
      const e = evaluations.get(id);
      if (!e) throw new NarhubError('NOT_FOUND', `no evaluation ${id}`);
      if (!['pending', 'evaluating', 'building'].includes(e.status))
        throw new NarhubError('BAD_REQUEST', `evaluation ${id} has already ended (${e.status})`);
      await cancelEvaluations([id], reason);
      return this.evaluation(id);
    },
    evaluationCache(id: number): string {
      const e = evaluations.get(id);
      if (!e) throw new NarhubError('NOT_FOUND', `no evaluation ${id}`);
      return projects.byId(e.projectId)!.cacheName;
    },
    async evaluation(id: number): Promise<EvaluationView> {
      const e = evaluations.get(id);
      if (!e) throw new NarhubError('NOT_FOUND', `no evaluation ${id}`);
      const project = projects.byId(e.projectId)!;
      const linked = new Set(evaluations.builds(id));
      const spokes = await listSpokes();
      const jobs = [];
      for (const j of evaluations.jobs(id)) {
        const b = j.drvHash ? builds.get(j.drvHash) : undefined;
        jobs.push(
          jobView(j, b ? await viewOf(b, spokes) : undefined, j.drvHash !== null && linked.has(j.drvHash), e.createdAt),
        );
      }
      return evaluationView(e, project.name, evaluations.buildCounts(id), jobs);
    },
    /** A project's evaluations, newest first; of one jobset (branch or pr-N) when given. */
    evaluations(projectName: string, limit = 20, jobset?: string): EvaluationView[] {
      const p = requireProject(projects, projectName);
      const rows =
        jobset === undefined
          ? evaluations.ofProject(p.id, limit)
          : history.evaluationsOfJobset(p.id, jobset, limit).map((id) => evaluations.get(id)!);
      return rows.map((e) => evaluationView(e, p.name, evaluations.buildCounts(e.id)));
    },
    /** A project's jobsets (branches and pull requests), each with its latest evaluation. */
    jobsets(projectName: string): { jobset: string; latest: EvaluationView }[] {
      const p = requireProject(projects, projectName);
      return history.jobsets(p.id).map((j) => {
        const e = evaluations.get(j.latest)!;
        return { jobset: j.jobset, latest: evaluationView(e, p.name, evaluations.buildCounts(e.id)) };
      });
    },
    /** An attribute's outcome and duration per evaluation (per commit), newest first. */
    attributeHistory(projectName: string, attr: string, limit = 50): AttrHistoryView[] {
      const p = requireProject(projects, projectName);
      return history.attrHistory(p.id, attr, limit).map(attrHistoryView);
    },

    // Builds

    buildCache(key: string): string {
      return requireBuild(key).cacheName;
    },
    /** A build, with every evaluation (project, jobset, commit, attribute) that asked for it. */
    async build(key: string): Promise<BuildView & { requestedBy: RequesterView[] }> {
      const b = requireBuild(key);
      return { ...(await viewOf(b)), requestedBy: history.requesters(b.drvHash).map(requesterView) };
    },
    /** Builds that produce this output path (full path, basename or hash part). */
    async buildsByOutput(path: string): Promise<BuildView[]> {
      const name = path.startsWith(`${DEFAULT_STORE_DIR}/`) ? path.slice(DEFAULT_STORE_DIR.length + 1) : path;
      const hash = name.slice(0, 32);
      if (!isValidHashPart(hash))
        throw new NarhubError('STORE_PATH_INVALID', `${JSON.stringify(path.slice(0, 200))} is not a store path`);
      const spokes = await listSpokes();
      return Promise.all(builds.byOutput(hash).map((b) => viewOf(b, spokes)));
    },
    async builds(status: BuildStatus | undefined, limit = 100): Promise<BuildView[]> {
      return this.filterBuilds({ status, limit });
    },
    /** Builds by status, project, branch (jobset), attribute and spoke; most recently changed first. */
    async filterBuilds(q: BuildsQuery): Promise<BuildView[]> {
      const spokes = await listSpokes();
      const projectId = q.project === undefined ? undefined : requireProject(projects, q.project).id;
      const rows =
        projectId === undefined && q.branch === undefined && q.attr === undefined && q.spoke === undefined
          ? builds.list(q.status, q.limit)
          : history.filterBuilds({ ...q, project: projectId, jobset: q.branch }).flatMap((h) => builds.get(h) ?? []);
      return Promise.all(rows.map((b) => viewOf(b, spokes)));
    },
    async restartBuild(key: string): Promise<BuildView> {
      const { graph: g } = started();
      const b = requireBuild(key);
      if (b.status === 'queued' || b.status === 'running')
        throw new NarhubError('BAD_REQUEST', `the build of ${b.drvPath} is already ${b.status}`);
      await g.restart(b);
      return viewOf(requireBuild(key));
    },
    async cancelBuild(key: string): Promise<BuildView> {
      const { canceller: c } = started();
      const b = requireBuild(key);
      if (b.status !== 'queued' && b.status !== 'running')
        throw new NarhubError('BAD_REQUEST', `the build of ${b.drvPath} has already ended (${b.status})`);
      await c.cancelBuild(b.drvHash, 'cancelled by an administrator');
      return viewOf(requireBuild(key));
    },

    // Logs

    /** The stored log of a finished build, or what a spoke streamed so far. */
    async log(key: string): Promise<LogSource> {
      const b = requireBuild(key);
      const cacheRow = cache.registry.get(b.cacheName);
      const file = cacheRow ? cache.files.get('log', cacheRow, b.drvPath) : undefined;
      if (file) {
        const read = await cache.store.get(file.storageKey);
        if (read) {
          const enc = compressionOfEncoding(file.contentEncoding ?? undefined);
          // pipeline, not pipe: a read that fails half-way must fail the decoded stream too, or the
          // response waits for an end that never comes. Whoever sends it sees the error.
          const stream = enc !== 'none' ? pipeline(read.stream, createDecompressor(enc), () => undefined) : read.stream;
          return { kind: 'stored', stream, contentType: 'text/plain; charset=utf-8' };
        }
      }
      if (!redis) return { kind: 'none' };
      const live = await readLogStream(redis.command, b.drvHash);
      return live.exists ? { kind: 'live', text: live.text, eof: live.eof } : { kind: 'none' };
    },
    /** Follows a build's live log until it ends; needs the hub running. */
    followLog(key: string, signal: AbortSignal): AsyncGenerator<string> {
      const { redis: r } = started();
      const b = requireBuild(key);
      const isOver = () => {
        const now = builds.get(b.drvHash);
        return !now || (now.status !== 'queued' && now.status !== 'running');
      };
      return followLogStream(r.blocking(`log-${b.drvHash}`), b.drvHash, { signal, isOver });
    },
    buildIsOpen(key: string): boolean {
      const b = requireBuild(key);
      return b.status === 'queued' || b.status === 'running';
    },

    // Spokes and queues

    async spokes(): Promise<SpokeView[]> {
      started();
      return (await listSpokes()).map(spokeView);
    },
    async queues(): Promise<QueueView[]> {
      const { dispatcher: d } = started();
      const names = [...new Set([...d.queueNames(), ...builds.open().map((b) => b.queue)])].sort();
      const depth = await d.depth(names);
      const spokes = await listSpokes();
      return names.map((name) => queueView(name, depth[name], spokes));
    },
    /** What the metrics show of the hub: queue depths, live spokes, builds by status. */
    async stats(): Promise<{ queues: QueueView[]; spokesOnline: number; builds: Record<string, number> }> {
      const [queues, spokes] = await Promise.all([this.queues(), this.spokes()]);
      return { queues, spokesOnline: spokes.length, builds: builds.countByStatus() };
    },
    /** For tests and benchmarks: resolves once received events are handled. */
    async settled(): Promise<void> {
      await events?.idle();
    },
  };
}

export type Hub = ReturnType<typeof createHub>;
