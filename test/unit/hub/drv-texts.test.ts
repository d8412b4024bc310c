import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DrvTexts } from '../../../src/hub/drv-texts.js';

test('a text is taken once', () => {
  const texts = new DrvTexts();
  texts.remember('a', 'Derive(a)');
  assert.equal(texts.take('a'), 'Derive(a)');
  assert.equal(texts.take('a'), undefined);
  assert.equal(texts.take('never'), undefined);
});

test('past the budget the oldest texts go first; one larger than the budget is not kept', () => {
  const texts = new DrvTexts(10);
  texts.remember('a', 'aaaa');
  texts.remember('b', 'bbbb');
  texts.remember('a', 'AAAA'); // again: now the newest, counted once
  texts.remember('c', 'cccc');
  assert.equal(texts.take('b'), undefined, 'b was the oldest');
  assert.equal(texts.take('a'), 'AAAA');
  assert.equal(texts.take('c'), 'cccc');
  texts.remember('d', 'dddd');
  texts.remember('huge', 'x'.repeat(11));
  assert.equal(texts.take('huge'), undefined);
  assert.equal(texts.take('d'), 'dddd', 'a text too large to keep evicts nothing');
});

test('far past the budget, the texts kept are the newest that fit, each once', () => {
  const texts = new DrvTexts(1000 * 100);
  for (let i = 0; i < 200_000; i++) texts.remember(`h${i}`, 'x'.repeat(100));
  texts.remember('h199500', 'y'.repeat(150)); // again, longer: the newest now, counted once
  assert.equal(texts.take('h198999'), undefined, 'older than the last 1,000');
  assert.equal(texts.take('h199000'), undefined, 'pushed out by the second h199500');
  assert.equal(texts.take('h199001'), 'x'.repeat(100));
  assert.equal(texts.take('h199500'), 'y'.repeat(150));
  assert.equal(texts.take('h199999'), 'x'.repeat(100));
});
