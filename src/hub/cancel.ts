import type { Logger } from 'pino';
import type { BuildsRepo } from '../db/builds-repo.js';
import type { EvaluationRow, EvaluationsRepo } from '../db/evaluations-repo.js';
import { CANCEL_CHANNEL } from '../protocol/build-jobs.js';
import type { BuildGraph } from './build-graph.js';
import type { Dispatcher } from './dispatcher.js';
import type { HubRedis } from './redis.js';

export interface CancellerOptions {
  builds: BuildsRepo;
  evaluations: EvaluationsRepo;
  dispatcher: Dispatcher;
  graph: BuildGraph;
  redis: HubRedis;
  logger: Logger;
}

/**
 * Cancelling builds: a build without a job is marked cancelled; a waiting job is removed from its
 * queue; a running one is killed by its spoke through CANCEL_CHANNEL. What waited on a cancelled
 * build is cancelled with it.
 */
export function createCanceller(opts: CancellerOptions) {
  const { builds, evaluations, dispatcher, graph, redis, logger } = opts;

  async function cancelBuild(drvHash: string, reason: string): Promise<boolean> {
    const b = builds.get(drvHash);
    if (!b || (b.status !== 'queued' && b.status !== 'running')) return false;
    if (b.status === 'queued' && !b.enqueued) return graph.cancelled(drvHash, reason);
    if (b.status === 'queued' && (await dispatcher.remove(b.queue, drvHash))) return graph.cancelled(drvHash, reason);
    // Running (or just taken by a spoke): the spoke kills it and fails the job as `cancelled`.
    await redis.command.publish(CANCEL_CHANNEL, drvHash);
    return graph.cancelled(drvHash, reason);
  }

  return {
    cancelBuild,
    /**
     * A newer evaluation of the same project and jobset supersedes the older live ones: builds that
     * only they still need are cancelled; a build any other live, current evaluation needs is not.
     */
    async supersede(newer: EvaluationRow): Promise<number> {
      const older = evaluations.olderLive(newer.projectId, newer.jobset, newer.id);
      if (older.length === 0) return 0;
      for (const o of older) evaluations.supersede(o.id, newer.id);
      const wanted = new Set(evaluations.builds(newer.id));
      const candidates = new Set<string>();
      for (const o of older) for (const h of evaluations.builds(o.id)) if (!wanted.has(h)) candidates.add(h);
      let cancelled = 0;
      for (const h of candidates) {
        if (evaluations.keptNeeding(h).length > 0) continue;
        try {
          if (await cancelBuild(h, `superseded by evaluation ${newer.id}`)) cancelled++;
        } catch (err) {
          logger.warn({ err, drvHash: h }, 'cannot cancel a superseded build');
        }
      }
      for (const o of older) graph.checkEvaluation(o.id);
      if (cancelled > 0)
        logger.info(
          { evaluation: newer.id, superseded: older.map((o) => o.id), cancelled },
          'cancelled superseded builds',
        );
      return cancelled;
    },
  };
}

export type Canceller = ReturnType<typeof createCanceller>;
