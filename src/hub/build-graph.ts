import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import type { BuildRow, BuildsRepo, BuildSuccess, FailureKind } from '../db/builds-repo.js';
import type { EvaluationsRepo } from '../db/evaluations-repo.js';
import { mapLimit } from '../io/map-limit.js';
import type { BuildJobData } from '../protocol/build-jobs.js';
import type { Dispatcher } from './dispatcher.js';

/** Job adds in flight at once: enough to keep Redis busy, never one per build of a large plan. */
const ENQUEUE_CONCURRENCY = 64;
/** Builds settled in one transaction by `advance`: a plan of 100,000 is settled in many short ones. */
const SETTLE_BATCH = 1_000;

export interface BuildGraphOptions {
  db: Database;
  builds: BuildsRepo;
  evaluations: EvaluationsRepo;
  dispatcher: Dispatcher;
  logger: Logger;
  jobData(build: BuildRow): BuildJobData;
}

/**
 * The DAG over BullMQ. BullMQ flows are trees (one parent per job), so the dependency graph lives
 * here, in SQLite: a build gets a job only once every input build succeeded; when one fails, every
 * build waiting on it (transitively) becomes dependency-failed without a job ever existing. All
 * decisions are synchronous SQLite transactions; only adding jobs is asynchronous, after the
 * `enqueued` flag is committed, so a crash in between is found (flag set, no job) and repaired by
 * the reconciler.
 */
export function createBuildGraph(opts: BuildGraphOptions) {
  const { db, builds, evaluations, dispatcher, logger } = opts;

  /** Evaluations touched by a change, checked for completion once per batch. */
  function finishEvaluations(drvHashes: Iterable<string>): void {
    const evalIds = new Set<number>();
    for (const h of drvHashes) for (const id of evaluations.liveNeeding(h)) evalIds.add(id);
    for (const id of evalIds) checkEvaluation(id);
  }

  /** Marks an evaluation finished once none of its builds is queued or running. */
  function checkEvaluation(evalId: number): void {
    const e = evaluations.get(evalId);
    if (e?.status !== 'building') return;
    // Called for every finished build: only an evaluation with nothing left open is counted.
    if (evaluations.hasOpenBuilds(evalId)) return;
    const counts = evaluations.buildCounts(evalId);
    const jobErrors = evaluations.hasJobErrors(evalId);
    if (jobErrors || (counts.failed ?? 0) + (counts['dependency-failed'] ?? 0) > 0)
      evaluations.finish(evalId, 'failed');
    else if ((counts.cancelled ?? 0) > 0) evaluations.finish(evalId, 'cancelled');
    else evaluations.finish(evalId, 'succeeded');
  }

  /**
   * Decides, for builds that are queued without a job, whether they can run now, can never run
   * (an input failed or was cancelled), or must keep waiting. `hashes` should list inputs before
   * dependents, so one pass settles a whole plan. Returns the builds to enqueue.
   */
  function settle(hashes: Iterable<string>): string[] {
    const runnable: string[] = [];
    const ended: string[] = [];
    db.transaction(() => {
      for (const hash of hashes) {
        const b = builds.get(hash);
        if (b?.status !== 'queued' || b.enqueued) continue;
        const deps = builds.deps(hash);
        const failed = deps.find((d) => d.status === 'failed' || d.status === 'dependency-failed');
        if (failed) {
          const root = failed.status === 'failed' ? failed.hash : (builds.get(failed.hash)?.failedDep ?? failed.hash);
          if (builds.dependencyFail(hash, root)) ended.push(hash);
          continue;
        }
        if (deps.some((d) => d.status === 'cancelled')) {
          if (builds.cancel(hash, 'an input build was cancelled')) ended.push(hash);
          continue;
        }
        if (deps.every((d) => d.status === 'succeeded') && builds.markEnqueued(hash)) runnable.push(hash);
      }
      finishEvaluations(ended);
    })();
    return runnable;
  }

  /**
   * Adds the jobs of builds whose `enqueued` flag was just set, ENQUEUE_CONCURRENCY at once (a
   * plan's first wave may hold thousands). A failed add clears the flag for a later retry.
   */
  async function enqueue(hashes: readonly string[]): Promise<void> {
    await mapLimit(hashes, ENQUEUE_CONCURRENCY, async (hash) => {
      const b = builds.get(hash);
      if (b?.status !== 'queued') return;
      try {
        await dispatcher.enqueue(b.queue, opts.jobData(b), b.priority);
      } catch (err) {
        logger.warn({ err, drvHash: hash }, 'cannot add the build job; will retry');
        builds.markUnenqueued(hash);
      }
    });
  }

  /** Every queued build, transitively, that waits on `hash`; inputs before dependents. */
  function waitingDependents(hash: string): string[] {
    const order: string[] = [];
    const seen = new Set<string>([hash]);
    const queue = [hash];
    while (queue.length > 0) {
      const h = queue.shift()!;
      for (const d of builds.dependents(h)) {
        if (seen.has(d.hash) || d.status !== 'queued' || d.enqueued) continue;
        seen.add(d.hash);
        order.push(d.hash);
        queue.push(d.hash);
      }
    }
    return order;
  }

  /**
   * Reopens a finished build as a new attempt, with every build that never ran because of it
   * (dependency-failed on it or cancelled with it, transitively), and the finished evaluations
   * that need any of them. Returns the reopened builds, the restarted one first.
   */
  function reopen(b: BuildRow): string[] {
    const reset = [b.drvHash];
    db.transaction(() => {
      builds.requeue(b.drvHash, { bump: true, cacheId: b.cacheId, priority: b.priority });
      const todo = [b.drvHash];
      const seen = new Set(todo);
      while (todo.length > 0) {
        const h = todo.shift()!;
        for (const d of builds.dependents(h)) {
          if (seen.has(d.hash) || (d.status !== 'dependency-failed' && d.status !== 'cancelled')) continue;
          seen.add(d.hash);
          builds.requeue(d.hash, { bump: d.status === 'cancelled', cacheId: b.cacheId, priority: b.priority });
          reset.push(d.hash);
          todo.push(d.hash);
        }
      }
      for (const h of reset) for (const id of evaluations.finishedNeeding(h)) evaluations.reopen(id);
    })();
    return reset;
  }

  return {
    settle,
    enqueue,
    checkEvaluation,
    finishEvaluations,
    /**
     * Settles builds and adds the jobs of those that became runnable, SETTLE_BATCH at a time (in
     * the order given, so inputs listed first are settled first), the event loop free between.
     */
    async advance(hashes: Iterable<string>): Promise<void> {
      const list = [...hashes];
      for (let i = 0; i < list.length; i += SETTLE_BATCH) {
        await enqueue(settle(list.slice(i, i + SETTLE_BATCH)));
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    },
    /** `build restart`: reopens a finished build and what never ran because of it, and starts what can run. */
    async restart(b: BuildRow): Promise<void> {
      await enqueue(settle(reopen(b)));
    },
    running(hash: string, attempt: number, spoke: string | null, startedAt: number | null): void {
      builds.markRunning(hash, attempt, startedAt ?? Date.now(), spoke);
    },
    waiting(hash: string, attempt: number): void {
      builds.markWaiting(hash, attempt);
    },
    async succeeded(hash: string, attempt: number, r: BuildSuccess): Promise<void> {
      let changed = false;
      db.transaction(() => {
        changed = builds.succeed(hash, attempt, r);
        if (changed) finishEvaluations([hash]);
      })();
      if (!changed) return;
      // Only direct dependents can become runnable now.
      await enqueue(
        settle(
          builds
            .dependents(hash)
            .filter((d) => d.status === 'queued' && !d.enqueued)
            .map((d) => d.hash),
        ),
      );
    },
    failed(hash: string, attempt: number, r: { kind: FailureKind; error: string; spoke: string | null }): void {
      db.transaction(() => {
        if (!builds.fail(hash, attempt, r)) return;
        finishEvaluations([hash]);
        settle(waitingDependents(hash));
      })();
    },
    /** Cancels a build that has no job or whose job was removed, and what waits on it. */
    cancelled(hash: string, reason: string): boolean {
      let changed = false;
      db.transaction(() => {
        changed = builds.cancel(hash, reason);
        if (!changed) return;
        finishEvaluations([hash]);
        settle(waitingDependents(hash));
      })();
      return changed;
    },
  };
}

export type BuildGraph = ReturnType<typeof createBuildGraph>;
