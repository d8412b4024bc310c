import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import { NarhubError } from '../../../src/errors.js';

test('config sizes and durations may be written as 64G and 30d, or as bytes and seconds', () => {
  const config = parseConfig({
    maxNarSize: '64G',
    maxSmallFileSize: 1024,
    gc: { pendingGracePeriod: '1d', supersededGracePeriod: '40d', interval: '1h30m' },
    caches: [{ name: 'main', redirectExpiry: '5m' }],
    storage: { type: 's3', bucket: 'nars', partSize: '32M' },
    hub: { evalTimeout: '10m', buildTimeout: 7200 },
  });
  assert.equal(config.maxNarSize, 64 * 1024 ** 3);
  assert.equal(config.maxSmallFileSize, 1024);
  assert.deepEqual(config.gc, { pendingGracePeriod: 86_400, supersededGracePeriod: 40 * 86_400, interval: 5_400 });
  assert.equal(config.caches[0]!.redirectExpiry, 300);
  assert.equal(config.storage.type === 's3' && config.storage.partSize, 32 * 1024 ** 2);
  assert.equal(config.hub.evalTimeout, 600);
  assert.equal(config.hub.buildTimeout, 7200);
});

test('a size or duration that does not parse is refused, naming the key', () => {
  for (const [raw, key] of [
    [{ maxNarSize: '64GB' }, 'maxNarSize'],
    [{ gc: { interval: 'hourly' } }, 'gc.interval'],
    [{ caches: [{ name: 'a', redirectExpiry: '5 min' }] }, 'caches.0.redirectExpiry'],
  ] as const) {
    assert.throws(
      () => parseConfig(raw),
      (err: unknown) => err instanceof NarhubError && err.code === 'CONFIG_INVALID' && err.message.includes(`${key}:`),
      key,
    );
  }
  // A size on a duration key is caught by the duration parser, a duration on a size key likewise.
  assert.throws(() => parseConfig({ maxNarSize: '30d' }), /maxNarSize/);
  assert.throws(() => parseConfig({ gc: { interval: '1G' } }), /gc\.interval/);
});

test('integers past 2^53, and a sweep interval past what a timer can hold, are refused', () => {
  assert.throws(() => parseConfig({ maxNarSize: 1e300 }), /maxNarSize: 1e\+300 is too large/);
  assert.throws(() => parseConfig({ gc: { interval: 2 ** 53 } }), /gc\.interval/);
  assert.throws(() => parseConfig({ gc: { interval: '25d' } }), /gc\.interval/);
  assert.equal(parseConfig({ gc: { interval: '24d' } }).gc.interval, 24 * 86_400);
});

test('old GC keys (gcInterval, pendingGracePeriod, supersededGracePeriod) are read into gc, each warned', () => {
  const warnings: string[] = [];
  const config = parseConfig({ gcInterval: '2h', pendingGracePeriod: 60, supersededGracePeriod: '1d', gc: {} }, (w) =>
    warnings.push(w),
  );
  assert.deepEqual(config.gc, { interval: 7_200, pendingGracePeriod: 60, supersededGracePeriod: 86_400 });
  assert.deepEqual(warnings, [
    'config key gcInterval is deprecated: it is gc.interval now (read as such)',
    'config key pendingGracePeriod is deprecated: it is gc.pendingGracePeriod now (read as such)',
    'config key supersededGracePeriod is deprecated: it is gc.supersededGracePeriod now (read as such)',
  ]);
  // Checked at the new place: a bad old value is refused like a bad new one.
  assert.throws(() => parseConfig({ gcInterval: '25d' }), /gc\.interval/);
  // Both spellings at once is ambiguous: refused, naming both.
  assert.throws(
    () => parseConfig({ gcInterval: 60, gc: { interval: 120 } }),
    (err: unknown) =>
      err instanceof NarhubError &&
      err.code === 'CONFIG_INVALID' &&
      /gcInterval and gc\.interval are both set/.test(err.message),
  );
  // Without the old keys, nothing is said.
  warnings.length = 0;
  assert.equal(parseConfig({ gc: { interval: 60 } }, (w) => warnings.push(w)).gc.interval, 60);
  assert.deepEqual(warnings, []);
});
