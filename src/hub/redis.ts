import { Redis } from 'ioredis';

/**
 * Redis connections of the hub. `command` is shared by the BullMQ producers and by HTTP handlers,
 * so it does not queue commands while Redis is away (they fail fast: enableOfflineQueue false).
 * Blocking readers (QueueEvents, live log followers) each get a connection of their own with
 * maxRetriesPerRequest null, as BullMQ requires.
 */
export interface HubRedis {
  url: string;
  command: Redis;
  blocking(name: string): Redis;
  close(): Promise<void>;
}

export async function connectRedis(url: string): Promise<HubRedis> {
  const owned = new Set<Redis>();
  const command = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 2,
    connectionName: 'narhub-hub',
  });
  // Errors surface on the commands that hit them; an unhandled 'error' event would crash the process.
  command.on('error', () => undefined);
  await command.connect();
  return {
    url,
    command,
    blocking(name: string): Redis {
      const r = new Redis(url, { maxRetriesPerRequest: null, connectionName: `narhub-hub-${name}` });
      r.on('error', () => undefined);
      owned.add(r);
      r.once('end', () => owned.delete(r));
      return r;
    },
    async close() {
      await Promise.allSettled([...owned].map((r) => r.quit().catch(() => r.disconnect())));
      await command.quit().catch(() => command.disconnect());
    },
  };
}
