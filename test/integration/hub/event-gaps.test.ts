// The hub's event consumer against a real redis-server: events trimmed from a queue's stream
// before the consumer read them (a hub lagging more than the stream keeps) are noticed, once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import pino from 'pino';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { createHubStateRepo } from '../../../src/db/hub-state-repo.js';
import { createEventConsumer, type BuildEvent } from '../../../src/hub/event-consumer.js';
import { connectRedis } from '../../../src/hub/redis.js';
import { waitFor } from '../../helpers/hub.js';
import { startRedis } from '../../helpers/redis.js';

test('events trimmed from a stream before the consumer read them are reported once; others are not', async (t) => {
  const server = await startRedis(t);
  const db = openDatabase(':memory:');
  migrate(db, defaultMigrationsDir());
  const hubRedis = connectRedis(server.url, pino({ level: 'silent' }));
  await new Promise<void>((resolve) => hubRedis.onReady(resolve));
  const client = new Redis(server.url);
  client.on('error', () => undefined); // redis-server stops before this client in the cleanup
  const seen: string[] = [];
  const consumer = createEventConsumer({
    redis: hubRedis,
    state: createHubStateRepo(db),
    logger: pino({ level: 'silent' }),
    handle: async (_queue, e: BuildEvent) => void seen.push(e.jobId),
  });
  t.after(async () => {
    await consumer.close();
    client.disconnect();
    await hubRedis.close();
    db.close();
  });
  const stream = 'bull:q:events';
  const progress = (jobId: string) => ['*', 'event', 'progress', 'jobId', jobId, 'data', '1'] as const;
  await client.xadd(stream, ...progress('first'));
  // A queue met for the first time is read from its newest entry on.
  await consumer.watch('q');
  await client.xadd(stream, ...progress('a'));
  await waitFor('event a to be handled', async () => seen.includes('a'));
  assert.deepEqual(await consumer.gaps(), [], 'the first check only takes its bearings');

  // Two entries added and one of them trimmed before the consumer could read it.
  await client
    .multi()
    .xadd(stream, ...progress('lost'))
    .xadd(stream, ...progress('b'))
    .xtrim(stream, 'MAXLEN', 1)
    .exec();
  await waitFor('event b to be handled', async () => seen.includes('b'));
  assert.ok(!seen.includes('lost'));
  assert.deepEqual(await consumer.gaps(), ['q']);
  assert.deepEqual(await consumer.gaps(), [], 'a loss is reported once');

  // Trimming what was read already is no loss.
  await client
    .multi()
    .xadd(stream, ...progress('c'))
    .xadd(stream, ...progress('d'))
    .exec();
  await waitFor('event d to be handled', async () => seen.includes('d'));
  await client.xtrim(stream, 'MAXLEN', 1);
  assert.deepEqual(await consumer.gaps(), []);
});
