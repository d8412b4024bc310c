import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { CANCEL_CHANNEL } from '../protocol/build-jobs.js';

/**
 * Listens on `CANCEL_CHANNEL` (pub/sub; the message is a drvHash) and calls `onCancel` for each
 * message. The connection is the listener's own: a subscribed Redis connection can do nothing
 * else. ioredis re-subscribes by itself after a reconnect.
 */
export class CancelListener {
  readonly #redis: Redis;

  private constructor(redis: Redis) {
    this.#redis = redis;
  }

  /** Subscribes (waiting up to 2 s for Redis; later, ioredis completes it on connect). */
  static async start(subscriber: Redis, onCancel: (drvHash: string) => void, logger: Logger): Promise<CancelListener> {
    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== CANCEL_CHANNEL) return;
      const drvHash = message.trim();
      if (drvHash !== '') onCancel(drvHash);
    });
    // The subscriber is made with `maxRetriesPerRequest: null`: if Redis is not reachable yet,
    // the command waits for it instead of failing, so the start does not wait on it.
    const subscribed = subscriber.subscribe(CANCEL_CHANNEL).catch((err: unknown) => {
      logger.error({ err: (err as Error).message }, 'cannot subscribe to cancellations');
    });
    await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    return new CancelListener(subscriber);
  }

  async stop(): Promise<void> {
    if (this.#redis.status !== 'ready') return;
    await this.#redis.unsubscribe(CANCEL_CHANNEL).catch(() => undefined);
  }
}
