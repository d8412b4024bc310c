import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import { NarhubError } from '../../../src/errors.js';

test('config sizes and durations may be written as 64G and 30d, or as bytes and seconds', () => {
  const config = parseConfig({
    maxNarSize: '64G',
    maxSmallFileSize: 1024,
    pendingGracePeriod: '1d',
    supersededGracePeriod: '40d',
    gcInterval: '1h30m',
    caches: [{ name: 'main', redirectExpiry: '5m' }],
    storage: { type: 's3', bucket: 'nars', partSize: '32M' },
    hub: { evalTimeout: '10m', buildTimeout: 7200 },
  });
  assert.equal(config.maxNarSize, 64 * 1024 ** 3);
  assert.equal(config.maxSmallFileSize, 1024);
  assert.equal(config.pendingGracePeriod, 86_400);
  assert.equal(config.supersededGracePeriod, 40 * 86_400);
  assert.equal(config.gcInterval, 5_400);
  assert.equal(config.caches[0]!.redirectExpiry, 300);
  assert.equal(config.storage.type === 's3' && config.storage.partSize, 32 * 1024 ** 2);
  assert.equal(config.hub.evalTimeout, 600);
  assert.equal(config.hub.buildTimeout, 7200);
});

test('a size or duration that does not parse is refused, naming the key', () => {
  for (const [raw, key] of [
    [{ maxNarSize: '64GB' }, 'maxNarSize'],
    [{ gcInterval: 'hourly' }, 'gcInterval'],
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
  assert.throws(() => parseConfig({ gcInterval: '1G' }), /gcInterval/);
});

test('integers past 2^53, and a sweep interval past what a timer can hold, are refused', () => {
  assert.throws(() => parseConfig({ maxNarSize: 1e300 }), /maxNarSize: 1e\+300 is too large/);
  assert.throws(() => parseConfig({ gcInterval: 2 ** 53 }), /gcInterval/);
  assert.throws(() => parseConfig({ gcInterval: '25d' }), /gcInterval/);
  assert.equal(parseConfig({ gcInterval: '24d' }).gcInterval, 24 * 86_400);
});
