import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { createKeyedLock } from '../../../src/io/keyed-lock.js';

test('work for one key runs one at a time in arrival order; other keys run beside it', async () => {
  const lock = createKeyedLock();
  const events: string[] = [];
  const job = (name: string) => async () => {
    events.push(`start ${name}`);
    await turn();
    await turn();
    events.push(`end ${name}`);
    return name;
  };
  const results = await Promise.all([lock.run('a', job('a1')), lock.run('a', job('a2')), lock.run('b', job('b1'))]);
  assert.deepEqual(results, ['a1', 'a2', 'b1']);
  assert.ok(events.indexOf('end a1') < events.indexOf('start a2'), events.join(', '));
  assert.ok(events.indexOf('start b1') < events.indexOf('end a1'), `b waited for a: ${events.join(', ')}`);
});

test('a failure is its caller’s alone: the next work for the key still runs', async () => {
  const lock = createKeyedLock();
  const failed = lock.run('k', async () => {
    throw new Error('first fails');
  });
  const next = lock.run('k', async () => 'second runs');
  await assert.rejects(failed, /first fails/);
  assert.equal(await next, 'second runs');
});
