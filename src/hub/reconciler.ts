import type { Logger } from 'pino';
import type { BuildsRepo } from '../db/builds-repo.js';
import type { BuildGraph } from './build-graph.js';
import { mapLimit } from '../io/map-limit.js';
import type { Dispatcher } from './dispatcher.js';
import { failureOf, resultOf } from './results.js';

/**
 * Brings the build records in line with BullMQ after the hub was away: every queued or running
 * build is compared with its job. Finished jobs deliver their result (completed jobs are kept
 * for a while for exactly this), running ones are marked running, vanished ones are added again,
 * and builds that had no job yet are settled (their inputs may have finished meanwhile).
 */
export async function reconcile(deps: {
  builds: BuildsRepo;
  dispatcher: Dispatcher;
  graph: BuildGraph;
  logger: Logger;
}): Promise<Record<string, number>> {
  const { builds, dispatcher, graph, logger } = deps;
  const stats: Record<string, number> = {};
  const count = (k: string) => (stats[k] = (stats[k] ?? 0) + 1);
  const toSettle: string[] = [];
  const open = builds.open();
  await mapLimit(open, 16, async (b) => {
    if (!b.enqueued) {
      toSettle.push(b.drvHash);
      count('unqueued');
      return;
    }
    let { state, job } = await dispatcher.state(b.queue, b.drvHash);
    if (job && job.data.attempt !== b.attempt && state !== 'active') {
      await job.remove().catch(() => undefined);
      state = 'missing';
    }
    count(state);
    switch (state) {
      case 'completed':
        await graph.succeeded(b.drvHash, b.attempt, resultOf(job!.returnvalue));
        break;
      case 'failed':
        graph.failed(b.drvHash, b.attempt, { ...failureOf(job!.failedReason), spoke: job!.processedBy ?? null });
        break;
      case 'active':
        graph.running(b.drvHash, b.attempt, job?.processedBy ?? null, job?.processedOn ?? null);
        break;
      case 'waiting':
        if (b.status === 'running') graph.waiting(b.drvHash, b.attempt);
        break;
      case 'missing':
        // Gone (removed, or Redis came back empty): queued again, as a new job of the same attempt.
        if (b.status === 'running') graph.waiting(b.drvHash, b.attempt);
        builds.markUnenqueued(b.drvHash);
        toSettle.push(b.drvHash);
        break;
    }
  });
  // Inputs before dependents is not needed here: a build whose input is still open keeps waiting.
  await graph.advance(toSettle);
  if (open.length > 0) logger.info({ open: open.length, ...stats }, 'reconciled builds with their jobs');
  return stats;
}
