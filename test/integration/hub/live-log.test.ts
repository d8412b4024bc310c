// A build's live log: what a spoke appends to its Redis stream reaches a follower as it is written.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { followLogStream, readLogStream } from '../../../src/hub/logs.js';
import { logStreamKey } from '../../../src/protocol/build-jobs.js';
import { startRedis } from '../../helpers/redis.js';

const DRV = `${'0'.repeat(31)}a`;

test('a follower sees chunks as the spoke writes them and stops at the end-of-file entry', async (t) => {
  const redis = await startRedis(t);
  const writer = new Redis(redis.url);
  t.after(() => writer.quit());
  await writer.xadd(logStreamKey(DRV), '*', 'data', 'building\n');

  const seen: { chunk: string; at: number }[] = [];
  const follower = (async () => {
    for await (const chunk of followLogStream(new Redis(redis.url), DRV, {
      signal: new AbortController().signal,
      isOver: () => false,
    })) {
      seen.push({ chunk, at: Date.now() });
    }
  })();

  await sleep(300);
  assert.deepEqual(
    seen.map((s) => s.chunk),
    ['building\n'],
    'the backlog arrives first',
  );
  const writtenAt = Date.now();
  await writer.xadd(logStreamKey(DRV), '*', 'data', 'step 2\n');
  await sleep(300);
  assert.deepEqual(
    seen.map((s) => s.chunk),
    ['building\n', 'step 2\n'],
    'a chunk written later arrives while the build runs',
  );
  assert.ok(seen[1]!.at >= writtenAt);
  await writer.xadd(logStreamKey(DRV), '*', 'eof', '1');
  await follower;

  const stored = await readLogStream(writer, DRV);
  assert.deepEqual(stored, { exists: true, text: 'building\nstep 2\n', eof: true });
});

test('a follower stops when its client goes away, and when the build is over without an end entry', async (t) => {
  const redis = await startRedis(t);
  const controller = new AbortController();
  const chunks: string[] = [];
  const aborted = (async () => {
    for await (const chunk of followLogStream(new Redis(redis.url), DRV, {
      signal: controller.signal,
      isOver: () => false,
    }))
      chunks.push(chunk);
  })();
  await sleep(200);
  controller.abort();
  await aborted;
  assert.deepEqual(chunks, []);

  let over = false;
  const afterEnd: string[] = [];
  const ended = (async () => {
    for await (const chunk of followLogStream(new Redis(redis.url), DRV, {
      signal: new AbortController().signal,
      isOver: () => over,
    }))
      afterEnd.push(chunk);
  })();
  over = true;
  await ended; // returns after one empty blocking read instead of waiting forever
  assert.deepEqual(afterEnd, []);
});
