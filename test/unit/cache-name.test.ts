import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertValidCacheName, CACHE_NAME_PATTERN, isValidCacheName } from '../../src/cache-name.js';

test('a cache name is 1-63 of a-z, 0-9, - and _, starting with a letter or digit, and not a route of narhub', () => {
  for (const ok of ['main', 'a', '0', 'team-ci_2', 'x'.repeat(63)]) {
    assert.ok(isValidCacheName(ok), ok);
    assert.doesNotThrow(() => assertValidCacheName(ok));
  }
  // Upper case, dots and a leading dash or underscore were let through by the spoke's own check.
  for (const bad of ['', 'Main', 'a.b', '-a', '_a', 'x'.repeat(64), 'a/b', 'a%2f', 'ä']) {
    assert.ok(!isValidCacheName(bad), bad);
    assert.throws(() => assertValidCacheName(bad), { code: 'CACHE_NAME_INVALID' });
  }
  for (const reserved of ['api', 'healthz', 'metrics', 'static', 'nar', 'log', 'ui']) {
    assert.ok(!isValidCacheName(reserved), reserved);
    assert.throws(() => assertValidCacheName(reserved), { code: 'CACHE_NAME_INVALID', message: /reserved/ });
  }
  assert.equal(new RegExp(CACHE_NAME_PATTERN).test('main'), true);
});
