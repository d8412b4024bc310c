import { hostname, loadavg } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_TTL_SECONDS, spokeKey, type SpokeHeartbeat } from '../protocol/build-jobs.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';

export interface HeartbeatSource {
  id: string;
  systems: string[];
  features: string[];
  maxJobs: number;
  /** drvHash of each running build, read at every beat. */
  running(): string[];
}

/** How soon after a build starts or ends the heartbeat says so. */
const SOON_MS = 250;

/**
 * Writes `spokeKey(id)` (JSON SpokeHeartbeat, TTL HEARTBEAT_TTL_SECONDS) now and every
 * HEARTBEAT_INTERVAL_MS, so the hub sees which spokes are alive and what they run; `stop`
 * deletes it (a clean exit), while a dead spoke's key simply expires.
 */
export class Heartbeat {
  readonly #redis: Redis;
  readonly #source: HeartbeatSource;
  readonly #logger: Logger;
  readonly #startedAt = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #soon: NodeJS.Timeout | undefined;
  #beating: Promise<void> = Promise.resolve();
  #failing = false;
  #stopped = false;

  constructor(redis: Redis, source: HeartbeatSource, logger: Logger) {
    this.#redis = redis;
    this.#source = source;
    this.#logger = logger;
  }

  start(): Promise<void> {
    this.#timer = setInterval(() => void this.beat(), HEARTBEAT_INTERVAL_MS);
    return this.beat();
  }

  /**
   * A beat within SOON_MS, for a change of `running` (a build started or ended): the starts and
   * ends of many short builds share one write instead of costing a Redis round trip each.
   */
  soon(): void {
    if (this.#soon !== undefined || this.#stopped) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      void this.beat();
    }, SOON_MS);
    this.#soon.unref();
  }

  /** Writes one heartbeat now. */
  beat(): Promise<void> {
    this.#beating = this.#beating.then(() => this.#write());
    return this.#beating;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    clearTimeout(this.#soon);
    this.#timer = undefined;
    this.#soon = undefined;
    this.#stopped = true;
    await this.#beating;
    if (this.#redis.status !== 'ready') {
      this.#logger.warn('Redis is not connected: the heartbeat will expire by itself');
      return;
    }
    try {
      await this.#redis.del(spokeKey(this.#source.id));
    } catch (err) {
      this.#logger.warn({ err: (err as Error).message }, 'cannot delete the heartbeat');
    }
  }

  async #write(): Promise<void> {
    if (this.#stopped) return;
    const beat: SpokeHeartbeat = {
      protocol: PROTOCOL_VERSION,
      id: this.#source.id,
      hostname: hostname(),
      systems: this.#source.systems,
      features: this.#source.features,
      maxJobs: this.#source.maxJobs,
      load: loadavg()[0] ?? 0,
      running: this.#source.running(),
      startedAt: this.#startedAt,
      seenAt: Date.now(),
    };
    try {
      await this.#redis.set(spokeKey(beat.id), JSON.stringify(beat), 'EX', HEARTBEAT_TTL_SECONDS);
      if (this.#failing) this.#logger.info('heartbeat written again');
      this.#failing = false;
    } catch (err) {
      if (!this.#failing) this.#logger.warn({ err: (err as Error).message }, 'cannot write the heartbeat');
      this.#failing = true;
    }
  }
}
