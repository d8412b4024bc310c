import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffMs, type RetryInfo, withRetries } from '../../../src/io/retry.js';

test('backoff grows exponentially with jitter, capped, and honours Retry-After', () => {
  const policy = { retries: 4, baseMs: 100, maxMs: 1000 };
  assert.equal(backoffMs(0, { ...policy, random: () => 0 }), 50);
  assert.equal(backoffMs(0, { ...policy, random: () => 1 }), 100);
  assert.equal(backoffMs(3, { ...policy, random: () => 1 }), 800);
  assert.equal(backoffMs(10, { ...policy, random: () => 1 }), 1000);
  assert.equal(backoffMs(0, { ...policy, random: () => 0 }, 2), 1000, 'Retry-After, capped');
});

test('retries what `retryable` accepts, up to the limit, and throws the last error unchanged', async () => {
  const heard: RetryInfo[] = [];
  const waits: number[] = [];
  const options = {
    retries: 2,
    baseMs: 10,
    random: () => 1,
    sleep: async (ms: number) => void waits.push(ms),
    retryable: (err: unknown) => (err as Error).message !== 'final',
  };
  const errors = [new Error('one'), new Error('two'), new Error('three')];
  let calls = 0;
  await assert.rejects(
    withRetries(
      async () => {
        throw errors[calls++];
      },
      options,
      (info) => heard.push(info),
    ),
    (err) => err === errors[2],
  );
  assert.equal(calls, 3);
  assert.deepEqual(waits, [10, 20]);
  assert.deepEqual(
    heard.map((h) => [h.attempt, h.delayMs, h.error]),
    [
      [1, 10, errors[0]],
      [2, 20, errors[1]],
    ],
  );

  calls = 0;
  await assert.rejects(
    withRetries(async () => {
      calls++;
      throw new Error('final');
    }, options),
    /final/,
  );
  assert.equal(calls, 1, 'an error `retryable` refuses is not retried');
});

test('an abort ends the wait at once and starts no further attempt', async () => {
  const controller = new AbortController();
  let calls = 0;
  const failure = new Error('unreachable');
  const run = withRetries(
    async () => {
      calls++;
      throw failure;
    },
    { retries: 5, baseMs: 60_000, signal: controller.signal, retryable: () => true },
  );
  setImmediate(() => controller.abort());
  const started = Date.now();
  await assert.rejects(run, (err) => err === failure);
  assert.equal(calls, 1);
  assert.ok(Date.now() - started < 30_000, 'the 30-60 s wait ended with the abort');
});

test('a deadline bounds the retries by time: the last wait is cut to end by it, and none starts after it', async () => {
  let now = 1_000_000;
  const realNow = Date.now;
  Date.now = () => now;
  try {
    const waits: number[] = [];
    let calls = 0;
    await assert.rejects(
      withRetries(
        async () => {
          calls++;
          throw new Error('down');
        },
        {
          retries: Number.MAX_SAFE_INTEGER,
          baseMs: 1000,
          random: () => 1,
          deadline: now + 2500,
          sleep: async (ms: number) => {
            waits.push(ms);
            now += ms;
          },
          retryable: () => true,
        },
      ),
      /down/,
    );
    assert.deepEqual(waits, [1000, 1500], 'the second wait of 2 s is cut to the 1.5 s left');
    assert.equal(calls, 3);
  } finally {
    Date.now = realNow;
  }
});
