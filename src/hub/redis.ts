import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** At most one warning about Redis errors per this many milliseconds (an outage errors on every retry). */
const ERROR_LOG_INTERVAL_MS = 30_000;

/** What `/healthz` says of the hub's Redis: `ok` once commands can run, else ioredis' state (`reconnecting`…). */
export type RedisState = 'ok' | 'connecting' | 'reconnecting' | 'closed';

/**
 * Redis connections of the hub. `command` is shared by the BullMQ producers and by HTTP handlers,
 * so it does not queue commands while Redis is away (they fail fast: enableOfflineQueue false).
 * Blocking readers (QueueEvents, live log followers) each get a connection of their own with
 * maxRetriesPerRequest null, as BullMQ requires. Every connection reconnects by itself, forever.
 */
export interface HubRedis {
  url: string;
  command: Redis;
  blocking(name: string): Redis;
  state(): RedisState;
  /** Calls `fn` every time the command connection becomes ready: the first time, and after each outage. */
  onReady(fn: () => void): void;
  /** Logs an error of something that talks to Redis (a queue, its events), rate-limited with the connections' own. */
  reportError(source: string, err: Error): void;
  close(): Promise<void>;
}

/**
 * Logs connection errors rate-limited: the first at once, then one line per interval with how
 * many were left out; and one line when the connection is back.
 */
function createErrorReporter(logger: Logger) {
  let lastLogged = 0;
  let suppressed = 0;
  let failing = false;
  return {
    error(source: string, err: Error): void {
      failing = true;
      const now = Date.now();
      if (now - lastLogged < ERROR_LOG_INTERVAL_MS) {
        suppressed++;
        return;
      }
      logger.warn(
        { err, source, ...(suppressed > 0 ? { suppressed } : {}) },
        suppressed > 0 ? `Redis errors (${suppressed} more since the last report)` : 'Redis error',
      );
      lastLogged = now;
      suppressed = 0;
    },
    ready(): void {
      if (!failing) return;
      failing = false;
      suppressed = 0;
      lastLogged = 0;
      logger.info('Redis connection restored');
    },
  };
}

/**
 * Opens the hub's connections without waiting for Redis: the command connection is ready when
 * `onReady` first fires. A Redis that is away at start, or goes away later, is retried.
 */
export function connectRedis(url: string, logger: Logger): HubRedis {
  const owned = new Set<Redis>();
  const report = createErrorReporter(logger);
  const command = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 2,
    connectionName: 'narhub-hub',
  });
  // Without a listener an 'error' event would crash the process.
  command.on('error', (err) => report.error('command', err));
  command.on('ready', () => report.ready());
  // The first failure rejects connect(); ioredis goes on retrying, and 'ready' tells when it is back.
  command.connect().catch(() => undefined);
  let closed = false;
  return {
    url,
    command,
    blocking(name: string): Redis {
      const r = new Redis(url, { maxRetriesPerRequest: null, connectionName: `narhub-hub-${name}` });
      r.on('error', (err) => report.error(name, err));
      owned.add(r);
      r.once('end', () => owned.delete(r));
      return r;
    },
    state(): RedisState {
      if (closed) return 'closed';
      switch (command.status) {
        case 'ready':
          return 'ok';
        case 'reconnecting':
          return 'reconnecting';
        case 'close':
        case 'end':
          return 'closed';
        default:
          return 'connecting';
      }
    },
    reportError: (source, err) => report.error(source, err),
    onReady(fn: () => void): void {
      command.on('ready', fn);
      if (command.status === 'ready') fn();
    },
    async close() {
      closed = true;
      await Promise.allSettled([...owned, command].map(closeConnection));
    },
  };
}

/** QUIT when Redis is there (so it sees a clean goodbye), else just drop the socket: a QUIT would wait for Redis. */
async function closeConnection(r: Redis): Promise<void> {
  if (r.status !== 'ready') {
    r.disconnect();
    return;
  }
  const timer = setTimeout(() => r.disconnect(), 2_000);
  await r.quit().catch(() => r.disconnect());
  clearTimeout(timer);
}
