import { QueueEvents, type QueueEventsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { BuildsRepo } from '../db/builds-repo.js';
import type { HubStateRepo } from '../db/hub-state-repo.js';
import type { BuildGraph } from './build-graph.js';
import type { Dispatcher } from './dispatcher.js';
import type { HubRedis } from './redis.js';
import { failureOf, resultOf } from './results.js';

/** A BullMQ event of a build queue, as the hub handles it. */
export type BuildEvent =
  | { type: 'active'; jobId: string }
  | { type: 'waiting'; jobId: string; prev: string | undefined }
  | { type: 'delayed'; jobId: string }
  | { type: 'stalled'; jobId: string }
  | { type: 'progress'; jobId: string; data: unknown }
  | { type: 'completed'; jobId: string; returnvalue: unknown }
  | { type: 'failed'; jobId: string; failedReason: string };

/**
 * What a build's event means for its record. Idempotent, and tied to the attempt: an event of an
 * earlier attempt than the record's (a late result, a retry's leftovers) changes nothing.
 */
export async function handleBuildEvent(
  deps: { builds: BuildsRepo; graph: BuildGraph; dispatcher: Dispatcher },
  ev: BuildEvent,
): Promise<void> {
  const { builds, graph, dispatcher } = deps;
  const hash = ev.jobId.replace(/^build-/, '');
  const b = builds.get(hash);
  if (!b) return;
  switch (ev.type) {
    case 'active': {
      const job = await dispatcher.job(b.queue, hash);
      if (job && job.data.attempt !== b.attempt) return;
      graph.running(hash, b.attempt, job?.processedBy ?? null, job?.processedOn ?? Date.now());
      return;
    }
    case 'waiting':
      if (ev.prev === 'failed' || ev.prev === 'active') graph.waiting(hash, b.attempt);
      return;
    case 'delayed':
    case 'stalled':
      graph.waiting(hash, b.attempt);
      return;
    case 'progress':
      builds.setProgress(hash, ev.data);
      return;
    case 'completed': {
      // A result names its attempt (a result of an earlier attempt is ignored) and its spoke;
      // one from a spoke that does not is matched with its job.
      const result = resultOf(ev.returnvalue);
      const job = result.attempt === null || result.spoke === null ? await dispatcher.job(b.queue, hash) : undefined;
      await graph.succeeded(hash, result.attempt ?? job?.data.attempt ?? b.attempt, {
        ...result,
        spoke: result.spoke ?? job?.processedBy ?? null,
      });
      return;
    }
    case 'failed': {
      // The job tells which attempt this failure belongs to; a failure of an earlier attempt is ignored.
      const job = await dispatcher.job(b.queue, hash);
      graph.failed(hash, job?.data.attempt ?? b.attempt, {
        ...failureOf(ev.failedReason),
        spoke: job?.processedBy ?? null,
      });
      return;
    }
  }
}

export interface EventConsumerOptions {
  redis: HubRedis;
  state: HubStateRepo;
  logger: Logger;
  handle(queue: string, event: BuildEvent): Promise<void>;
}

const KEY = 'events:';

const STREAM_ID = /^\d+-\d+$/;

/** What a queue's consumer has read of its stream: how many entries, up to which id. */
interface ReadCount {
  entries: number;
  lastId: string;
  /** At the last check that found the consumer caught up: the stream's entries-added, and `entries`. */
  baseline?: { added: number; entries: number };
}

/**
 * A QueueEvents that counts the stream entries it reads (BullMQ emits each entry once under its
 * event name, with the entry's id last; the per-job `event:jobId` copies are not counted).
 */
class CountingQueueEvents extends QueueEvents {
  readonly count: ReadCount;

  constructor(name: string, opts: QueueEventsOptions, lastId: string) {
    super(name, opts);
    this.count = { entries: 0, lastId };
  }

  // biome-ignore lint/suspicious/noExplicitAny: BullMQ's emit is typed per listener; this sees them all.
  override emit(event: any, ...args: any[]): boolean {
    const id: unknown = args[args.length - 1];
    if (typeof event === 'string' && !event.includes(':') && typeof id === 'string' && STREAM_ID.test(id)) {
      this.count.entries++;
      this.count.lastId = id;
    }
    return super.emit(event, ...args);
  }
}

/** A flat `XINFO STREAM` reply's field. */
function field(info: unknown[], name: string): unknown {
  const at = info.indexOf(name);
  return at >= 0 ? info[at + 1] : undefined;
}

/** How often, at most, the id of the last handled event of a queue is written to SQLite. */
const SAVE_EVERY_MS = 250;

/**
 * Consumes the BullMQ events of every build queue in use, one QueueEvents per queue. The events
 * of one job are handled one at a time in stream order; different jobs' events run side by side,
 * so one job's Redis round trips do not hold every other job's (a queue handled strictly in order
 * lags seconds behind busy spokes). The id up to which every event of a queue is handled is
 * stored in SQLite (at most every SAVE_EVERY_MS, and on idle and close), so a restarted hub
 * resumes from there: nothing is missed (the reconciler covers events trimmed from the stream),
 * and events handled again after a crash are harmless, handlers being idempotent.
 */
export function createEventConsumer(opts: EventConsumerOptions) {
  const { redis, state, logger } = opts;
  const consumers = new Map<string, { events: CountingQueueEvents; progress: QueueProgress; connection: Redis }>();
  const starting = new Map<string, Promise<void>>();
  let closed = false;

  /**
   * The id of the newest event of a queue's stream, so a queue met for the first time starts from now, without a gap.
   */
  async function newestEventId(queue: string): Promise<string> {
    const newest = (await redis.command.xrevrange(`bull:${queue}:events`, '+', '-', 'COUNT', 1)) as [
      string,
      string[],
    ][];
    return newest[0]?.[0] ?? '0-0';
  }

  async function start(queue: string): Promise<void> {
    let lastEventId = state.get(KEY + queue);
    if (lastEventId === undefined) {
      lastEventId = await newestEventId(queue);
      state.set(KEY + queue, lastEventId);
    }
    const connection = redis.blocking(`events-${queue}`);
    const events = new CountingQueueEvents(
      queue,
      { connection, lastEventId, autorun: false, blockingTimeout: 5_000 },
      lastEventId,
    );
    const progress = createQueueProgress((id) => state.set(KEY + queue, id));
    consumers.set(queue, { events, progress, connection });
    const enqueue = (event: BuildEvent, id: string) => {
      progress.add(id, event.jobId, () =>
        opts
          .handle(queue, event)
          .catch((err: unknown) =>
            logger.error({ err, queue, event: event.type, jobId: event.jobId }, 'handling a build event failed'),
          ),
      );
    };
    events.on('active', ({ jobId }, id) => enqueue({ type: 'active', jobId }, id));
    events.on('waiting', ({ jobId, prev }, id) => enqueue({ type: 'waiting', jobId, prev }, id));
    events.on('delayed', ({ jobId }, id) => enqueue({ type: 'delayed', jobId }, id));
    events.on('stalled', ({ jobId }, id) => enqueue({ type: 'stalled', jobId }, id));
    events.on('progress', ({ jobId, data }, id) => enqueue({ type: 'progress', jobId, data }, id));
    events.on('completed', ({ jobId, returnvalue }, id) => enqueue({ type: 'completed', jobId, returnvalue }, id));
    events.on('failed', ({ jobId, failedReason }, id) => enqueue({ type: 'failed', jobId, failedReason }, id));
    events.on('error', (err) => {
      if (!closed) redis.reportError(`events of ${queue}`, err);
    });
    void events.run().catch((err: unknown) => {
      if (!closed) logger.error({ err, queue }, 'queue events stopped');
    });
    await events.waitUntilReady();
  }

  return {
    /** Starts consuming a queue's events (once). */
    watch(queue: string): Promise<void> {
      let p = starting.get(queue);
      if (!p) {
        p = start(queue);
        p.catch(() => starting.delete(queue));
        starting.set(queue, p);
      }
      return p;
    },
    /** Queues whose events were consumed before (by this or an earlier process). */
    knownQueues(): string[] {
      return [...state.withPrefix(KEY).keys()];
    },
    /**
     * Queues whose event stream lost entries before this consumer read them (trimmed while the
     * hub lagged more than the stream keeps): their builds only a reconciliation brings up to
     * date. Told by counting: whenever the consumer has caught up with its stream, the entries
     * it read since the previous such check must be as many as the stream added. Each loss is
     * reported once.
     */
    async gaps(): Promise<string[]> {
      const lost: string[] = [];
      for (const [queue, { events }] of consumers) {
        let info: unknown[];
        try {
          info = (await redis.command.call('XINFO', 'STREAM', `bull:${queue}:events`)) as unknown[];
        } catch {
          continue; // no stream yet, or Redis away: nothing to say now
        }
        const c = events.count;
        // Behind (or already past) the stream as it was: no verdict until a later check.
        if (c.lastId !== String(field(info, 'last-generated-id'))) continue;
        const added = Number(field(info, 'entries-added'));
        const previous = c.baseline;
        c.baseline = { added, entries: c.entries };
        if (previous && added - previous.added > c.entries - previous.entries) lost.push(queue);
      }
      return lost;
    },
    /** Resolves once every event received so far has been handled. */
    async idle(): Promise<void> {
      await Promise.all([...consumers.values()].map((c) => c.progress.idle()));
    },
    async close(): Promise<void> {
      closed = true;
      await Promise.allSettled([...consumers.values()].map((c) => closeQueueEvents(c.events, c.connection)));
      await Promise.allSettled([...consumers.values()].map((c) => c.progress.idle()));
      consumers.clear();
    },
  };
}

export type EventConsumer = ReturnType<typeof createEventConsumer>;

/**
 * Closes a QueueEvents, without waiting for Redis. Its connection is dropped first (that ends
 * the blocking read); BullMQ's close then waits for the connection's 'end', which ioredis never
 * emits for a connection dropped while it was reconnecting, so the wait is bounded.
 */
async function closeQueueEvents(events: QueueEvents, connection: Redis): Promise<void> {
  const reachable = connection.status === 'ready';
  if (!reachable) connection.disconnect();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    events.close(),
    new Promise((resolve) => {
      timer = setTimeout(resolve, reachable ? 5_000 : 500);
    }),
  ]);
  clearTimeout(timer);
  connection.disconnect();
}

export interface QueueProgress {
  /**
   * Runs `handle` after the job's earlier events have been handled. A handler reports its own
   * failures; one that rejects anyway counts as handled all the same.
   */
  add(id: string, jobId: string, handle: () => Promise<void>): void;
  /** Resolves once every event added so far is handled and the resume point saved. */
  idle(): Promise<void>;
}

/**
 * The handling of one queue's events: a chain per job, and the resume point, which is the id of
 * the newest event such that it and every event before it have been handled.
 */
export function createQueueProgress(save: (id: string) => void): QueueProgress {
  const chains = new Map<string, Promise<void>>();
  /** Events in stream order, until they and all before them are handled. */
  const order: { id: string; done: boolean }[] = [];
  let handledUpTo: string | undefined;
  let saved: string | undefined;
  let timer: NodeJS.Timeout | undefined;

  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (handledUpTo !== undefined && handledUpTo !== saved) {
      save(handledUpTo);
      saved = handledUpTo;
    }
  };

  return {
    add(id, jobId, handle) {
      const event = { id, done: false };
      order.push(event);
      const chain = (chains.get(jobId) ?? Promise.resolve())
        .then(handle)
        .catch(() => undefined)
        .then(() => {
          event.done = true;
          while (order[0]?.done) handledUpTo = order.shift()!.id;
          if (timer === undefined) {
            timer = setTimeout(flush, SAVE_EVERY_MS);
            timer.unref();
          }
          if (chains.get(jobId) === chain) chains.delete(jobId);
        });
      chains.set(jobId, chain);
    },
    async idle() {
      while (chains.size > 0) await Promise.all([...chains.values()]);
      flush();
    },
  };
}
