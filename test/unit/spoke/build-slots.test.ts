import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BuildSlots } from '../../../src/spoke/build-slots.js';

test('BuildSlots bounds holders and reports every change', () => {
  const slots = new BuildSlots(2);
  const seen: boolean[] = [];
  slots.onChange((full) => seen.push(full));
  const a = slots.tryAcquire('a');
  const b = slots.tryAcquire('b');
  assert.ok(a && b);
  assert.equal(slots.full, true);
  assert.equal(slots.tryAcquire('c'), undefined);
  assert.deepEqual(slots.running().sort(), ['a', 'b']);
  a();
  a(); // idempotent
  assert.equal(slots.used, 1);
  assert.deepEqual(slots.running(), ['b']);
  assert.deepEqual(seen, [false, true, false]);
  assert.throws(() => new BuildSlots(0), RangeError);
});
