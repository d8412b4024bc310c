import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatDuration, formatSize, parseDuration, parseSize } from '../../src/units.js';
import { fuzzRuns } from '../helpers/fuzz.js';

describe('parseSize and formatSize', () => {
  it('reads bytes and K, M, G, T, P as powers of 1024', () => {
    assert.equal(parseSize('4096'), 4096);
    assert.equal(parseSize('50G'), 50 * 1024 ** 3);
    assert.equal(parseSize('1.5M'), 1.5 * 1024 ** 2);
    assert.equal(parseSize('2T'), 2 * 1024 ** 4);
    assert.equal(parseSize('1P'), 1024 ** 5);
  });

  it('refuses what is not a size', () => {
    for (const bad of ['', 'G', '50GB', '50g', '-1', '1.5', '5 G', '1e3', '99999999999P']) {
      assert.equal(parseSize(bad), undefined, bad);
    }
  });

  it('prints the largest unit that divides exactly, else bytes', () => {
    assert.equal(formatSize(50 * 1024 ** 3), '50G');
    assert.equal(formatSize(1536), '1536');
    assert.equal(formatSize(3 * 1024 ** 2), '3M');
    assert.equal(formatSize(1000), '1000');
    assert.equal(formatSize(0), '0');
  });

  it('reads back every size it prints', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.constantFrom(1, 1024, 1024 ** 2, 1024 ** 3), (n, unit) => {
        const bytes = n * unit;
        fc.pre(Number.isSafeInteger(bytes));
        assert.equal(parseSize(formatSize(bytes)), bytes);
      }),
      fuzzRuns(100),
    );
  });
});

describe('parseDuration and formatDuration', () => {
  it('reads seconds and s, m, h, d, w, y, largest first', () => {
    assert.equal(parseDuration('90'), 90);
    assert.equal(parseDuration('30d'), 30 * 86_400);
    assert.equal(parseDuration('1h30m'), 5_400);
    assert.equal(parseDuration('2w'), 14 * 86_400);
    assert.equal(parseDuration('1y'), 365 * 86_400);
    assert.equal(parseDuration('0s'), 0);
  });

  it('refuses what is not a duration', () => {
    for (const bad of ['', 'd', '30D', '30 d', '1.5h', '30m1h', '1h1h', '-5s', 'soon', '30days']) {
      assert.equal(parseDuration(bad), undefined, bad);
    }
  });

  it('prints whole units, largest first', () => {
    assert.equal(formatDuration(30 * 86_400), '4w2d');
    assert.equal(formatDuration(36_000), '10h');
    assert.equal(formatDuration(5_400), '1h30m');
    assert.equal(formatDuration(0), '0s');
  });

  it('reads back every duration it prints', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 * 365 * 86_400 }), (seconds) => {
        assert.equal(parseDuration(formatDuration(seconds)), seconds);
      }),
      fuzzRuns(100),
    );
  });
});
