import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NarhubError } from '../../../src/errors.js';
import { createWaitSlots } from '../../../src/io/wait-slots.js';

const options = { slots: 2, queue: 2, maxWaitMs: 10_000, what: 'xz decodes', retryAfterSeconds: 5 };

test('wait slots: at most `slots` held; waiters get them first come, first served, as holders release', async () => {
  const slots = createWaitSlots(options);
  const a = await slots.acquire();
  const b = await slots.acquire();
  const order: string[] = [];
  const c = slots.acquire().then((release) => (order.push('c'), release));
  const d = slots.acquire().then((release) => (order.push('d'), release));
  await sleep(5);
  assert.deepEqual(slots.usage(), { held: 2, waiting: 2 });
  assert.deepEqual(order, []);
  b();
  b(); // a second release of the same slot gives nothing more
  const releaseC = await c;
  assert.deepEqual(order, ['c']);
  assert.deepEqual(slots.usage(), { held: 2, waiting: 1 });
  a();
  const releaseD = await d;
  assert.deepEqual(order, ['c', 'd']);
  releaseC();
  releaseD();
  assert.deepEqual(slots.usage(), { held: 0, waiting: 0 });
});

test('wait slots: past a full line, or a wait past maxWaitMs, is UNAVAILABLE with retryAfter', async () => {
  const slots = createWaitSlots({ ...options, slots: 1, queue: 1, maxWaitMs: 50 });
  const held = await slots.acquire();
  const waiting = slots.acquire();
  await assert.rejects(slots.acquire(), (err: unknown) => {
    assert.ok(err instanceof NarhubError);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(err.message, '1 more wait already: 1 xz decodes run at once; try again shortly');
    assert.deepEqual(err.details, { retryAfter: 5 });
    return true;
  });
  await assert.rejects(waiting, /waited 0 s: 1 xz decodes run at once/);
  assert.deepEqual(slots.usage(), { held: 1, waiting: 0 });
  held();
  assert.deepEqual(slots.usage(), { held: 0, waiting: 0 });
});

test('wait slots: an aborted waiter leaves the line with the signal reason and never holds a slot', async () => {
  const slots = createWaitSlots({ ...options, slots: 1 });
  const held = await slots.acquire();
  const controller = new AbortController();
  const waiting = slots.acquire(controller.signal);
  controller.abort(new Error('client gone'));
  await assert.rejects(waiting, /client gone/);
  assert.deepEqual(slots.usage(), { held: 1, waiting: 0 });
  held();
  assert.deepEqual(slots.usage(), { held: 0, waiting: 0 });
  await assert.rejects(slots.acquire(AbortSignal.abort(new Error('already'))), /already/);
});
