import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSpokeArgs } from '../../../src/cli/commands/spoke.js';
import { UsageError } from '../../../src/cli/usage-error.js';
import { effectiveLimit, SPOKE_DEFAULTS } from '../../../src/spoke/options.js';

const base = [
  '--hub',
  'http://127.0.0.1:8080/',
  '--redis-url',
  'redis://127.0.0.1:6379',
  '--systems',
  'x86_64-linux,aarch64-linux',
  '--token',
  'nh_x',
];

test('parseSpokeArgs: flags, defaults and the token sources', () => {
  const o = parseSpokeArgs(
    [...base, '--features', 'kvm,big-parallel', '--max-jobs', '3', '--id', 'builder-1', '--lock-duration', '5000'],
    {},
  );
  assert.equal(o.hubUrl, 'http://127.0.0.1:8080');
  assert.deepEqual(o.systems, ['x86_64-linux', 'aarch64-linux']);
  assert.deepEqual(o.features, ['kvm', 'big-parallel']);
  assert.equal(o.maxJobs, 3);
  assert.equal(o.id, 'builder-1');
  assert.equal(o.lockDuration, 5000);
  assert.equal(o.store, 'auto');
  assert.equal(o.timeout, SPOKE_DEFAULTS.timeout);
  assert.equal(parseSpokeArgs(base.slice(0, -2), { NARHUB_TOKEN: 'from-env' }).token, 'from-env');
});

test('parseSpokeArgs: usage errors', () => {
  const bad: string[][] = [
    base.slice(2), // no --hub
    base.filter((a) => a !== '--systems' && a !== 'x86_64-linux,aarch64-linux'),
    base.slice(0, -2), // no token
    [...base, '--max-jobs', '0'],
    [...base, '--token-file', '/nonexistent'],
    [...base, '--bogus'],
    ['--hub', 'ftp://x', ...base.slice(2)],
  ];
  for (const argv of bad) assert.throws(() => parseSpokeArgs(argv, {}), UsageError, argv.join(' '));
});

test('effectiveLimit: the job overrides when it sets a limit', () => {
  assert.equal(effectiveLimit(0, 7200), 7200);
  assert.equal(effectiveLimit(30, 7200), 30);
  assert.equal(effectiveLimit(-1, 0), 0);
});
