// The hub <-> spoke job payload has one TypeBox schema (protocol/build-jobs.ts), checked by the
// hub before it enqueues (dispatcher) and by the spoke before it builds (build-runner's checkJob).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDispatcher } from '../../../src/hub/dispatcher.js';
import type { HubRedis } from '../../../src/hub/redis.js';
import { checkBuildJobData, type BuildJobData } from '../../../src/protocol/build-jobs.js';
import { PROTOCOL_VERSION } from '../../../src/protocol/version.js';
import { runBuild, type BuildContext } from '../../../src/spoke/build-runner.js';

const drvHash = '0c3wp4f1hyz5hrw0y8l8wkbmbj1q9rp7';
const job: BuildJobData = {
  protocol: PROTOCOL_VERSION,
  drvHash,
  drvPath: `/nix/store/${drvHash}-hello.drv`,
  system: 'x86_64-linux',
  requiredFeatures: [],
  outputs: { out: '/nix/store/1ysdghxbr0zlzkcadib9ql2nhf11r3l2-hello' },
  inputOutputs: {},
  cacheName: 'main',
  trustedPublicKeys: ['main-1:AAAA'],
  attempt: 1,
  timeout: 0,
  maxSilent: 0,
};

/** Jobs that break the schema, each with the path the refusal must name. */
const broken: [string, unknown, RegExp][] = [
  ['a cache name with a slash', { ...job, cacheName: '../x' }, /^\/cacheName: /],
  ['a key without a name', { ...job, trustedPublicKeys: ['AAAA'] }, /^\/trustedPublicKeys\/0: /],
  ['a drvHash that is not nix32', { ...job, drvHash: 'e'.repeat(32) }, /^\/drvHash: /],
  ['a text attempt', { ...job, attempt: '1' }, /^\/attempt: /],
  ['no outputs', { ...job, outputs: undefined }, /^\/outputs: /],
  ['an output that is not a string', { ...job, outputs: { out: 5 } }, /^\/outputs\/out: /],
  ['drvText that is not a string', { ...job, drvText: 5 }, /^\/drvText: /],
];

test('the job schema accepts a job as the hub builds it', () => {
  assert.equal(checkBuildJobData(job), undefined);
  const { inputOutputs: _, ...withoutInputs } = job;
  assert.equal(checkBuildJobData(withoutInputs), undefined);
});

test('the job schema refuses malformed jobs, naming the field', () => {
  for (const [what, data, where] of broken) assert.match(checkBuildJobData(data) ?? 'accepted', where, what);
});

test('the hub refuses to enqueue a job that breaks the schema, before touching Redis', async () => {
  const touched: string[] = [];
  const redis = new Proxy({} as HubRedis, {
    get: (_target, key) => {
      touched.push(String(key));
      throw new Error(`Redis touched: ${String(key)}`);
    },
  });
  const dispatcher = createDispatcher({
    redis,
    attempts: 1,
    keepFinishedSeconds: 60,
    onQueue: async () => {
      touched.push('onQueue');
    },
  });
  for (const [what, data, where] of broken) {
    await assert.rejects(
      dispatcher.enqueue('build-x86_64-linux', data as BuildJobData, 0),
      (err: Error) => err.message.includes('breaks the protocol') && where.test(err.message.split('protocol: ')[1]!),
      what,
    );
  }
  assert.deepEqual(touched, []);
});

test('the spoke refuses a job that breaks the schema, without retrying, before any work', async () => {
  const ctx = {} as BuildContext; // any use of the context would throw: nothing may be reached
  for (const [what, data, where] of broken) {
    await assert.rejects(
      runBuild(data as BuildJobData, ctx, new AbortController().signal),
      (err: Error) =>
        err.name === 'UnrecoverableError' &&
        err.message.startsWith('infrastructure: invalid job: ') &&
        where.test(err.message.slice('infrastructure: invalid job: '.length)),
      what,
    );
  }
});
