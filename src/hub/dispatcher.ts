import { Queue, type Job } from 'bullmq';
import { NarhubError } from '../errors.js';
import {
  ACTIVE_QUEUES_KEY,
  buildJobId,
  checkBuildJobData,
  type BuildJobData,
  type BuildJobResult,
} from '../protocol/build-jobs.js';
import type { HubRedis } from './redis.js';

export type BuildJob = Job<BuildJobData, BuildJobResult>;

/** What BullMQ says about the job of a derivation. */
export type JobState = 'completed' | 'failed' | 'active' | 'waiting' | 'missing';

export interface DispatcherOptions {
  redis: HubRedis;
  /** Tries per job on infrastructure failures (BullMQ `attempts`). */
  attempts: number;
  /** Seconds finished jobs are kept, so a restarted hub can still read their results. */
  keepFinishedSeconds: number;
  /** Called (and awaited) before the first job goes to a queue this process has not used yet. */
  onQueue(name: string): Promise<void>;
}

/**
 * Events each queue's stream keeps (BullMQ trims it; its default is 10,000). A hub that lags
 * further behind its spokes than this loses results, which it then has to recover by
 * reconciling (`EventConsumer.gaps`); 100,000 events take a few tens of MB of Redis.
 */
const EVENTS_MAX_LEN = 100_000;

/** BullMQ priority: 1 is served first. Evaluation priorities run from -1000 (last) to 1000 (first). */
export function bullPriority(priority: number): number {
  return 1001 - Math.max(-1000, Math.min(1000, Math.round(priority)));
}

/**
 * The producer side of the build queues: one BullMQ queue per system and feature set, one job
 * per derivation, its id derived from the derivation's hash.
 */
export function createDispatcher(opts: DispatcherOptions) {
  const { redis } = opts;
  const queues = new Map<string, Queue<BuildJobData, BuildJobResult>>();
  const known = new Map<string, Promise<void>>();

  function queue(name: string): Queue<BuildJobData, BuildJobResult> {
    let q = queues.get(name);
    if (!q) {
      // A queue made while Redis is away never becomes usable (BullMQ's set-up fails for good).
      if (redis.state() !== 'ok') throw new NarhubError('UNAVAILABLE', 'Redis is not reachable');
      q = new Queue<BuildJobData, BuildJobResult>(name, {
        connection: redis.command,
        skipWaitingForReady: true,
        streams: { events: { maxLen: EVENTS_MAX_LEN } },
      });
      q.on('error', (err) => redis.reportError(`queue ${name}`, err));
      queues.set(name, q);
    }
    return q;
  }

  /** Makes the queue known: to the event consumer, and to spokes through ACTIVE_QUEUES_KEY. */
  function use(name: string): Promise<void> {
    let p = known.get(name);
    if (!p) {
      p = (async () => {
        await opts.onQueue(name);
        await redis.command.sadd(ACTIVE_QUEUES_KEY, name);
      })();
      p.catch(() => known.delete(name));
      known.set(name, p);
    }
    return p;
  }

  async function getJob(name: string, drvHash: string): Promise<BuildJob | undefined> {
    return (await queue(name).getJob(buildJobId(drvHash))) ?? undefined;
  }

  async function stateOf(job: BuildJob): Promise<JobState> {
    const s = await job.getState();
    if (s === 'completed' || s === 'failed' || s === 'active') return s;
    if (s === 'unknown') return 'missing';
    return 'waiting';
  }

  return {
    use,
    /** Tells spokes again about every queue in use: after an outage Redis may have come back empty. */
    async announce(): Promise<void> {
      const names = [...known.keys()];
      if (names.length > 0) await redis.command.sadd(ACTIVE_QUEUES_KEY, ...names);
    },
    queueNames(): string[] {
      return [...queues.keys()];
    },
    /**
     * Adds the job of one build attempt. An existing job of the same attempt that has not finished
     * is kept (adding twice is a no-op); a finished job of an earlier attempt is removed first,
     * since BullMQ ignores an add whose id still exists.
     */
    async enqueue(name: string, data: BuildJobData, priority: number): Promise<'added' | 'exists'> {
      // The spoke checks the same schema: a job it would refuse is never queued.
      const invalid = checkBuildJobData(data);
      if (invalid) throw new NarhubError('INTERNAL', `job data of ${data.drvPath} breaks the protocol: ${invalid}`);
      await use(name);
      const q = queue(name);
      const existing = await getJob(name, data.drvHash);
      if (existing) {
        const state = await stateOf(existing);
        if ((state === 'waiting' || state === 'active') && existing.data.attempt === data.attempt) return 'exists';
        if (state === 'active') throw new Error(`an earlier attempt of ${data.drvHash} is still running`);
        await existing.remove();
      }
      await q.add('build', data, {
        jobId: buildJobId(data.drvHash),
        priority: bullPriority(priority),
        attempts: opts.attempts,
        backoff: { type: 'exponential', delay: 5_000 },
        removeOnComplete: { age: opts.keepFinishedSeconds },
        removeOnFail: { age: opts.keepFinishedSeconds },
      });
      return 'added';
    },
    /** The job of a derivation, if BullMQ still has one (one round trip, no state). */
    job(name: string, drvHash: string): Promise<BuildJob | undefined> {
      return getJob(name, drvHash);
    },
    /** The job's state and the job itself (for its data, result or failure). */
    async state(name: string, drvHash: string): Promise<{ state: JobState; job: BuildJob | undefined }> {
      const job = await getJob(name, drvHash);
      if (!job) return { state: 'missing', job: undefined };
      return { state: await stateOf(job), job };
    },
    /** Removes a job that is not running. Returns false when it is running (locked by a spoke). */
    async remove(name: string, drvHash: string): Promise<boolean> {
      const job = await getJob(name, drvHash);
      if (!job) return true;
      if ((await stateOf(job)) === 'active') return false;
      try {
        await job.remove();
        return true;
      } catch {
        return false;
      }
    },
    async changePriority(name: string, drvHash: string, priority: number): Promise<void> {
      const job = await getJob(name, drvHash);
      if (job && (await stateOf(job)) === 'waiting')
        await job.changePriority({ priority: bullPriority(priority) }).catch(() => undefined);
    },
    /** Job counts of every queue in use. */
    async depth(
      names: readonly string[],
    ): Promise<
      Record<string, { waiting: number; active: number; delayed: number; completed: number; failed: number }>
    > {
      const out: Record<
        string,
        { waiting: number; active: number; delayed: number; completed: number; failed: number }
      > = {};
      for (const name of names) {
        const c = await queue(name).getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed');
        out[name] = {
          waiting: (c.waiting ?? 0) + (c.prioritized ?? 0),
          active: c.active ?? 0,
          delayed: c.delayed ?? 0,
          completed: c.completed ?? 0,
          failed: c.failed ?? 0,
        };
      }
      return out;
    },
    async close(): Promise<void> {
      await Promise.allSettled([...queues.values()].map((q) => q.close()));
      queues.clear();
    },
  };
}

export type Dispatcher = ReturnType<typeof createDispatcher>;
