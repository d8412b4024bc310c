import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createQueueProgress } from '../../../src/hub/event-consumer.js';

/** A handler that finishes when told to, recording when it started and ended. */
function gate(log: string[], name: string) {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return {
    open,
    handle: async () => {
      log.push(`start ${name}`);
      await opened;
      log.push(`end ${name}`);
    },
  };
}

test("one job's slow event does not hold other jobs' events; a job's own events stay in order", async () => {
  const log: string[] = [];
  const saved: string[] = [];
  const progress = createQueueProgress((id) => saved.push(id));
  const a1 = gate(log, 'a1');
  const a2 = gate(log, 'a2');
  const b1 = gate(log, 'b1');
  progress.add('1-0', 'job-a', a1.handle);
  progress.add('2-0', 'job-a', a2.handle);
  progress.add('3-0', 'job-b', b1.handle);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(log, ['start a1', 'start b1'], 'b runs beside a; a2 waits for a1');
  b1.open();
  await new Promise((r) => setImmediate(r));
  assert.ok(log.includes('end b1'));
  assert.ok(!log.includes('start a2'));
  a2.open();
  a1.open();
  await progress.idle();
  assert.deepEqual(log.slice(log.indexOf('end a1')), ['end a1', 'start a2', 'end a2']);
  assert.deepEqual(saved, ['3-0'], 'saved once, up to the newest event');
});

test('the resume point never passes an event still being handled', async () => {
  const log: string[] = [];
  const saved: string[] = [];
  const progress = createQueueProgress((id) => saved.push(id));
  const slow = gate(log, 'slow');
  progress.add('1-0', 'job-a', async () => undefined);
  progress.add('2-0', 'job-slow', slow.handle);
  progress.add('3-0', 'job-c', async () => undefined);
  // Past the save interval: only the first event counts as handled.
  await new Promise((r) => setTimeout(r, 400));
  assert.deepEqual(saved, ['1-0']);
  slow.open();
  await progress.idle();
  assert.deepEqual(saved, ['1-0', '3-0']);
});

test('a failing handler still counts as handled (its error is reported by the handler itself)', async () => {
  const saved: string[] = [];
  const progress = createQueueProgress((id) => saved.push(id));
  const seen: string[] = [];
  progress.add('1-0', 'job-a', async () => {
    seen.push('a1');
    throw new Error('boom');
  });
  progress.add('2-0', 'job-a', async () => {
    seen.push('a2');
  });
  await progress.idle();
  assert.deepEqual(seen, ['a1', 'a2']);
  assert.deepEqual(saved, ['2-0']);
});
