import { Worker, WaitingError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import {
  ACTIVE_QUEUES_KEY,
  parseQueueName,
  queueName,
  spokeCanServe,
  type BuildJobData,
  type BuildJobResult,
} from '../protocol/build-jobs.js';
import type { BuildSlots } from './build-slots.js';
import { jobFailure } from './failures.js';

export type BuildJob = Job<BuildJobData, BuildJobResult>;

export interface QueueSubscriptionOptions {
  spokeId: string;
  systems: string[];
  features: string[];
  /** Shared by every Worker (BullMQ duplicates it for its blocking reads); `maxRetriesPerRequest: null`. */
  connection: Redis;
  /** For reading ACTIVE_QUEUES_KEY. */
  client: Redis;
  slots: BuildSlots;
  lockDuration: number;
  stalledInterval: number;
  discoverInterval: number;
  /** Builds one job, holding a slot; `signal` is BullMQ's (e.g. `worker.cancelJob`). */
  process(job: BuildJob, signal: AbortSignal | undefined): Promise<BuildJobResult>;
  logger: Logger;
}

/**
 * The spoke's side of the queues: one BullMQ Worker per queue it can serve — the plain
 * per-system queues from the start, feature queues as they appear in ACTIVE_QUEUES_KEY.
 *
 * `--max-jobs` bounds builds across all of them with one BuildSlots semaphore. Each Worker's
 * concurrency follows what could start (its running builds plus the free slots), and while every
 * slot is taken all Workers are paused, so this spoke
 * stops fetching and an idle spoke takes the work instead. A job that still arrives in the
 * instant between a slot being taken and the pause (a Worker's blocking fetch in flight) finds
 * no slot and goes straight back to the head of its queue (`moveToWait` + WaitingError, which
 * counts no attempt).
 */
export class QueueSubscription {
  readonly #opts: QueueSubscriptionOptions;
  readonly #workers = new Map<string, Worker<BuildJobData, BuildJobResult>>();
  /** Builds running per queue. */
  readonly #active = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(opts: QueueSubscriptionOptions) {
    this.#opts = opts;
  }

  /** Names of the queues being worked. */
  get queues(): string[] {
    return [...this.#workers.keys()].sort();
  }

  async start(): Promise<void> {
    this.#unsubscribe = this.#opts.slots.onChange((full) => this.#setPaused(full));
    for (const system of this.#opts.systems) this.#subscribe(queueName(system, []));
    await this.discover();
    this.#timer = setInterval(() => void this.discover(), this.#opts.discoverInterval);
  }

  /** Reads ACTIVE_QUEUES_KEY and starts working every new queue this spoke can serve. */
  async discover(): Promise<void> {
    if (this.#closing) return;
    let names: string[];
    try {
      names = await this.#opts.client.smembers(ACTIVE_QUEUES_KEY);
    } catch (err) {
      this.#opts.logger.warn({ err: (err as Error).message }, 'cannot read the active queues');
      return;
    }
    for (const name of names.sort()) {
      if (this.#workers.has(name)) continue;
      const parsed = parseQueueName(name);
      if (!parsed || queueName(parsed.system, parsed.requiredFeatures) !== name) continue;
      if (spokeCanServe(this.#opts, parsed.system, parsed.requiredFeatures)) this.#subscribe(name);
    }
  }

  /**
   * Stops taking jobs and waits for the running ones (`worker.close()` finishes them, then
   * closes BullMQ's connections). Idempotent: every call returns the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#timer);
      this.#unsubscribe?.();
      await Promise.all([...this.#workers.values()].map((w) => w.close()));
    })();
    return this.#closing;
  }

  #subscribe(name: string): void {
    if (this.#closing || this.#workers.has(name)) return;
    const { slots, logger } = this.#opts;
    const processor = async (job: BuildJob, token?: string, signal?: AbortSignal): Promise<BuildJobResult> => {
      this.#active.set(name, (this.#active.get(name) ?? 0) + 1);
      const release = slots.tryAcquire(job.data?.drvHash ?? String(job.id));
      if (!release) {
        this.#active.set(name, this.#active.get(name)! - 1);
        logger.info({ queue: name, jobId: job.id }, 'no free slot: handing the job back');
        try {
          await job.moveToWait(token ?? job.token);
        } catch (err) {
          // Still ours and not movable (e.g. Redis trouble): let BullMQ retry it with backoff.
          throw jobFailure(
            'infrastructure',
            `the spoke was full and could not hand the job back: ${(err as Error).message}`,
          );
        }
        throw new WaitingError();
      }
      try {
        return await this.#opts.process(job, signal);
      } finally {
        this.#active.set(name, this.#active.get(name)! - 1);
        release();
      }
    };
    const worker = new Worker<BuildJobData, BuildJobResult>(name, processor, {
      connection: this.#opts.connection,
      name: this.#opts.spokeId,
      concurrency: Math.max(1, slots.max - slots.used),
      lockDuration: this.#opts.lockDuration,
      stalledInterval: this.#opts.stalledInterval,
      autorun: false,
    });
    let lastError = '';
    worker.on('error', (err) => {
      // BullMQ reports every reconnection attempt; say each distinct error once.
      if (err.message === lastError) return;
      lastError = err.message;
      logger.warn({ queue: name, err: err.message }, 'worker error');
    });
    worker.on('ready', () => (lastError = ''));
    worker.on('lockRenewalFailed', (ids) => logger.warn({ queue: name, jobIds: ids }, 'lost the lock of running jobs'));
    this.#workers.set(name, worker);
    logger.info({ queue: name }, 'working queue');
    if (slots.full) {
      // Starts when a slot frees (resume() of a paused Worker that never ran calls run()).
      void worker.pause(true);
    } else {
      worker
        .run()
        .catch((err: unknown) => logger.error({ queue: name, err: (err as Error).message }, 'worker stopped'));
    }
  }

  #setPaused(full: boolean): void {
    if (this.#closing) return;
    const free = this.#opts.slots.max - this.#opts.slots.used;
    for (const [name, worker] of this.#workers) {
      // Fetch no more than could start: what it runs plus the free slots (BullMQ needs >= 1).
      worker.concurrency = Math.max(1, (this.#active.get(name) ?? 0) + free);
      if (full && !worker.isPaused()) {
        void worker
          .pause(true)
          .catch((err: unknown) =>
            this.#opts.logger.warn({ queue: name, err: (err as Error).message }, 'cannot pause'),
          );
      } else if (!full && worker.isPaused()) {
        void worker.resume();
      }
    }
  }
}
