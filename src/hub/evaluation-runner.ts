import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import type { BuildsRepo } from '../db/builds-repo.js';
import type { CacheService } from '../cache/cache-service.js';
import type { CachesRepo } from '../db/caches-repo.js';
import type { EvaluationsRepo } from '../db/evaluations-repo.js';
import type { ProjectsRepo } from '../db/projects-repo.js';
import type { HubConfig } from '../config/schema.js';
import { queueName } from '../protocol/build-jobs.js';
import type { BuildGraph } from './build-graph.js';
import type { Canceller } from './cancel.js';
import type { Dispatcher } from './dispatcher.js';
import { flakeRefAt, type EvalLimits } from './evaluator.js';
import { nixEvaluationSource, type EvaluationSource } from './evaluation-source.js';
import type { DrvTexts } from './drv-texts.js';
import { PLAN_BATCH, plan, yieldToLoop, type PlannedBuild } from './planner.js';

export interface EvaluationRunnerOptions {
  db: Database;
  config: HubConfig;
  projects: ProjectsRepo;
  evaluations: EvaluationsRepo;
  builds: BuildsRepo;
  caches: CachesRepo;
  graph: BuildGraph;
  canceller: Canceller;
  dispatcher: Dispatcher;
  logger: Logger;
  /** The cache domain the derivations are uploaded through (in-process). */
  cache: CacheService;
  /** Largest NAR accepted (the server's `maxNarSize`). */
  maxNarSize: number;
  nixEnv?: NodeJS.ProcessEnv | undefined;
  /** Where the `.drv` texts of builds to enqueue are left for their jobs to carry. */
  drvTexts?: DrvTexts;
  /** Nix by default. */
  source?: EvaluationSource | undefined;
}

const base = (p: string) => p.replace(/^\/nix\/store\//, '');
const hashOf = (p: string) => base(p).slice(0, 32);

/**
 * Runs evaluations, at most `evalWorkers` at a time: lock the flake, find the jobs, read the
 * derivation graph, plan against the cache, upload the derivations to build, record the builds
 * wave by wave (in transactions of PLAN_BATCH, the event loop free between them) and let the
 * build graph enqueue what can run, then record the jobs.
 */
export function createEvaluationRunner(opts: EvaluationRunnerOptions) {
  const { db, config, projects, evaluations, builds, caches, graph, logger } = opts;
  const source = opts.source ?? nixEvaluationSource;
  const pending: number[] = [];
  const running = new Map<number, Promise<void>>();
  const stop = new AbortController();
  /** One per running evaluation: aborted when it is cancelled, which kills its Nix processes. */
  const cancels = new Map<number, AbortController>();

  function pump(): void {
    while (!stop.signal.aborted && running.size < config.evalWorkers && pending.length > 0) {
      const id = pending.shift()!;
      if (running.has(id)) continue;
      const p = run(id)
        .catch((err: unknown) => logger.error({ err, evaluation: id }, 'evaluation crashed'))
        .finally(() => {
          running.delete(id);
          cancels.delete(id);
          pump();
        });
      running.set(id, p);
    }
  }

  async function run(id: number): Promise<void> {
    const e = evaluations.get(id);
    if (!e || !['pending', 'evaluating'].includes(e.status)) return;
    const project = projects.byId(e.projectId);
    if (!project) return;
    evaluations.start(id);
    const cancel = new AbortController();
    cancels.set(id, cancel);
    const log = logger.child({ evaluation: id, project: project.name });
    // Cancelled while evaluating (a closed pull request, an admin): nothing more is recorded for it.
    const ended = () => {
      const status = evaluations.get(id)?.status;
      return cancel.signal.aborted || status === undefined || status === 'cancelled';
    };
    const started = Date.now();
    const limits: EvalLimits = {
      deadline: started + config.evalTimeout * 1000,
      memoryMb: config.evalMemoryMb,
      env: opts.nixEnv,
      signal: AbortSignal.any([stop.signal, cancel.signal]),
    };
    try {
      const phases: Record<string, number> = {};
      let mark = Date.now();
      const phase = (name: string) => {
        const now = Date.now();
        phases[name] = now - mark;
        mark = now;
      };
      const { lockedUrl, revision } = await source.lock(flakeRefAt(project.flake, e.ref, e.commitSha), limits);
      evaluations.setLocked(id, lockedUrl, revision);
      phase('lockMs');
      const attrs = await source.jobs(lockedUrl, project.attrs, project.systems, limits);
      phase('evalMs');
      const roots = attrs.flatMap((a) => (a.drvPath ? [a.drvPath] : []));
      const { graph: drvs, errors } = await source.derivations(roots, limits);
      phase('graphMs');
      const cacheRow = caches.list().find((c) => c.id === project.cacheId)!;
      const good = roots.filter((r) => !errors.has(r));
      const p = await plan({
        graph: drvs,
        roots: good,
        inCache: (outs) => {
          const missing = new Set(opts.cache.missingPaths(cacheRow, [...outs]));
          return new Set(outs.filter((o) => !missing.has(o)));
        },
        existing: (hashes) => builds.statusAmong(hashes),
      });
      const stayFailed = new Set(['failed', 'dependency-failed']);
      const toBuild = p.builds.filter((b) => !(b.action === 'keep' && stayFailed.has(b.known?.status ?? '')));

      // Builds are recorded and started wave by wave (a wave's inputs are all in earlier waves)
      // as soon as the wave's .drvs are in the cache, while the later waves' still upload: the
      // spokes start on the first builds instead of waiting for the whole upload. A build is
      // recorded only once its .drv is in the cache, so no spoke is ever sent for a missing one,
      // whether or not the hub stops half-way (an interrupted evaluation runs again).
      const waveOf = new Map<string, number>();
      const waves: PlannedBuild[][] = [];
      for (const b of p.builds) {
        const w = b.inputs.reduce((d, h) => Math.max(d, (waveOf.get(h) ?? -1) + 1), 0);
        waveOf.set(b.node.drvHash, w);
        (waves[w] ??= []).push(b);
      }
      const waiting = waves.map(() => 0);
      const waveOfDrv = new Map<string, number>();
      for (const b of toBuild) {
        const w = waveOf.get(b.node.drvHash)!;
        waiting[w]!++;
        waveOfDrv.set(b.node.drvPath, w);
      }
      const raised: string[] = [];
      let recordedWaves = 0;
      let advancing: Promise<void> = Promise.resolve();
      let recording: Promise<void> = Promise.resolve();
      let recordError: unknown;
      // A wave is recorded PLAN_BATCH builds per transaction, with the event loop let run between
      // them: one transaction for a wave of 100,000 would hold the loop for seconds.
      const recordWave = async (wave: PlannedBuild[]) => {
        for (let i = 0; i < wave.length; i += PLAN_BATCH) {
          const chunk = wave.slice(i, i + PLAN_BATCH);
          let recorded = false;
          db.transaction(() => {
            if (ended()) return;
            for (const b of chunk) recordBuild(b);
            recorded = true;
          })();
          if (!recorded) return;
          // In order, one chunk after the other; a failure to add a job is retried by the graph.
          advancing = advancing
            .then(() => graph.advance(chunk.map((b) => b.node.drvHash)))
            .catch((err: unknown) => log.warn({ err }, 'cannot start builds'));
          await yieldToLoop();
        }
      };
      const recordReadyWaves = () => {
        while (recordedWaves < waves.length && waiting[recordedWaves] === 0) {
          const wave = waves[recordedWaves++] ?? [];
          recording = recording
            .then(() => recordWave(wave))
            .catch((err: unknown) => {
              recordError ??= err;
            });
        }
      };
      const recordBuild = (b: PlannedBuild) => {
        const n = b.node;
        switch (b.action) {
          case 'create':
            builds.insert({
              drvHash: n.drvHash,
              drvPath: base(n.drvPath),
              system: n.system,
              requiredFeatures: n.requiredFeatures,
              outputs: Object.fromEntries(Object.entries(n.outputs).map(([k, v]) => [k, base(v)])),
              queue: queueName(n.system, n.requiredFeatures),
              cacheId: project.cacheId,
              priority: e.priority,
            });
            break;
          case 'retry':
          case 'reset':
            builds.requeue(n.drvHash, { bump: b.action === 'retry', cacheId: project.cacheId, priority: e.priority });
            break;
          case 'keep':
            if (builds.raisePriority(n.drvHash, e.priority)) raised.push(n.drvHash);
            break;
        }
        evaluations.linkBuild(id, n.drvHash);
        for (const input of b.inputs) builds.addDep(n.drvHash, input);
      };

      phase('planMs');
      recordReadyWaves();
      if (toBuild.length > 0) {
        const uploadLimits = {
          ...limits,
          deadline: Date.now() + Math.max(config.evalTimeout, 600) * 1000,
          maxSize: opts.maxNarSize,
          onReady: (drvPath: string, text: Buffer) => {
            const w = waveOfDrv.get(drvPath);
            if (w === undefined) return;
            opts.drvTexts?.remember(hashOf(drvPath), text.toString('utf8'));
            waveOfDrv.delete(drvPath);
            waiting[w]!--;
            recordReadyWaves();
          },
        };
        await source.upload(
          opts.cache,
          cacheRow,
          toBuild.map((b) => b.node.drvPath),
          uploadLimits,
        );
      }
      phase('uploadMs');
      // Every .drv is in the cache now.
      waiting.fill(0);
      recordReadyWaves();
      await recording;
      if (recordError !== undefined) throw recordError;
      if (ended()) throw new Error('the evaluation was cancelled');
      // The jobs a batch per transaction too; the evaluation counts as evaluated once all are in.
      for (let i = 0; i < attrs.length; i += PLAN_BATCH) {
        db.transaction(() => {
          for (const a of attrs.slice(i, i + PLAN_BATCH)) {
            const node = a.drvPath ? drvs.get(a.drvPath) : undefined;
            evaluations.insertJob({
              evalId: id,
              attr: a.attr,
              system: a.system ?? node?.system ?? null,
              drvPath: a.drvPath ? base(a.drvPath) : null,
              drvHash: a.drvPath ? hashOf(a.drvPath) : null,
              outputs: node ? Object.fromEntries(Object.entries(node.outputs).map(([k, v]) => [k, base(v)])) : null,
              error: a.error ?? (a.drvPath ? (errors.get(a.drvPath) ?? null) : null),
            });
          }
        })();
        await yieldToLoop();
      }
      if (ended()) throw new Error('the evaluation was cancelled');
      evaluations.setEvaluated(id);
      phase('recordMs');
      log.info(
        {
          revision,
          jobs: attrs.length,
          evalErrors: attrs.filter((a) => a.error).length + errors.size,
          builds: p.builds.length,
          cached: p.cached.size,
          ms: Date.now() - started,
          ...phases,
        },
        'evaluated',
      );
      const current = evaluations.get(id)!;
      if (config.cancelSuperseded) await opts.canceller.supersede(current);
      for (const h of raised) {
        const b = builds.get(h);
        if (b?.enqueued) await opts.dispatcher.changePriority(b.queue, h, b.priority).catch(() => undefined);
      }
      await advancing;
      await graph.advance(p.builds.map((b) => b.node.drvHash));
      graph.checkEvaluation(id);
    } catch (err) {
      if (stop.signal.aborted) {
        log.info('evaluation interrupted by shutdown; it resumes at the next start');
        return;
      }
      if (ended()) {
        log.info('evaluation cancelled while it was evaluating: none of its builds was started');
        return;
      }
      const message = err instanceof Error ? err.message : String(err);
      log.warn({ err }, 'evaluation failed');
      evaluations.finish(id, 'failed', message.slice(0, 4000));
    }
  }

  return {
    /**
     * Stops an evaluation that was just ended (cancelled) while it is still being evaluated: its
     * Nix processes are killed and none of the builds it had not recorded yet is recorded.
     */
    cancel(id: number): void {
      const i = pending.indexOf(id);
      if (i >= 0) pending.splice(i, 1);
      cancels.get(id)?.abort();
    },
    /** Queues an evaluation (pending or interrupted) to run. */
    submit(id: number): void {
      if (!pending.includes(id) && !running.has(id)) pending.push(id);
      pump();
    },
    async close(): Promise<void> {
      stop.abort();
      await Promise.allSettled([...running.values()]);
    },
  };
}

export type EvaluationRunner = ReturnType<typeof createEvaluationRunner>;
