import { QueueEvents } from 'bullmq';
import type { Logger } from 'pino';
import type { HubStateRepo } from '../db/hub-state-repo.js';
import type { HubRedis } from './redis.js';

/** A BullMQ event of a build queue, as the hub handles it. */
export type BuildEvent =
  | { type: 'active'; jobId: string }
  | { type: 'waiting'; jobId: string; prev: string | undefined }
  | { type: 'delayed'; jobId: string }
  | { type: 'stalled'; jobId: string }
  | { type: 'progress'; jobId: string; data: unknown }
  | { type: 'completed'; jobId: string; returnvalue: unknown }
  | { type: 'failed'; jobId: string; failedReason: string };

export interface EventConsumerOptions {
  redis: HubRedis;
  state: HubStateRepo;
  logger: Logger;
  handle(queue: string, event: BuildEvent): Promise<void>;
}

const KEY = 'events:';

/**
 * Consumes the BullMQ events of every build queue in use, one QueueEvents per queue. Events of a
 * queue are handled one at a time in stream order, and the id of each handled event is stored in
 * SQLite, so a restarted hub resumes right after the last event it processed: nothing is missed
 * (the reconciler covers events trimmed from the stream) and nothing is applied twice (handlers
 * are idempotent anyway).
 */
export function createEventConsumer(opts: EventConsumerOptions) {
  const { redis, state, logger } = opts;
  const consumers = new Map<string, { events: QueueEvents; chain: Promise<void> }>();
  const starting = new Map<string, Promise<void>>();
  let closed = false;

  /** The id of the newest event of a queue's stream, so a queue met for the first time starts from now, without a gap. */
  async function newestEventId(queue: string): Promise<string> {
    const newest = (await redis.command.xrevrange(`bull:${queue}:events`, '+', '-', 'COUNT', 1)) as [string, string[]][];
    return newest[0]?.[0] ?? '0-0';
  }

  async function start(queue: string): Promise<void> {
    let lastEventId = state.get(KEY + queue);
    if (lastEventId === undefined) {
      lastEventId = await newestEventId(queue);
      state.set(KEY + queue, lastEventId);
    }
    const connection = redis.blocking(`events-${queue}`);
    const events = new QueueEvents(queue, { connection, lastEventId, autorun: false, blockingTimeout: 5_000 });
    const entry = { events, chain: Promise.resolve() };
    consumers.set(queue, entry);
    const enqueue = (event: BuildEvent, id: string) => {
      entry.chain = entry.chain
        .then(() => opts.handle(queue, event))
        .catch((err: unknown) => logger.error({ err, queue, event: event.type, jobId: event.jobId }, 'handling a build event failed'))
        .then(() => {
          state.set(KEY + queue, id);
        });
    };
    events.on('active', ({ jobId }, id) => enqueue({ type: 'active', jobId }, id));
    events.on('waiting', ({ jobId, prev }, id) => enqueue({ type: 'waiting', jobId, prev }, id));
    events.on('delayed', ({ jobId }, id) => enqueue({ type: 'delayed', jobId }, id));
    events.on('stalled', ({ jobId }, id) => enqueue({ type: 'stalled', jobId }, id));
    events.on('progress', ({ jobId, data }, id) => enqueue({ type: 'progress', jobId, data }, id));
    events.on('completed', ({ jobId, returnvalue }, id) => enqueue({ type: 'completed', jobId, returnvalue }, id));
    events.on('failed', ({ jobId, failedReason }, id) => enqueue({ type: 'failed', jobId, failedReason }, id));
    events.on('error', (err) => {
      if (!closed) logger.warn({ err, queue }, 'queue events error');
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
    /** Resolves once every event received so far has been handled. */
    async idle(): Promise<void> {
      await Promise.all([...consumers.values()].map((c) => c.chain));
    },
    async close(): Promise<void> {
      closed = true;
      await Promise.allSettled([...consumers.values()].map((c) => c.events.close()));
      await Promise.allSettled([...consumers.values()].map((c) => c.chain));
      consumers.clear();
    },
  };
}

export type EventConsumer = ReturnType<typeof createEventConsumer>;
