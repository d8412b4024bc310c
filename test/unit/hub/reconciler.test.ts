// The reconciler brings build records in line with their jobs after the hub was away (a restart,
// or Redis coming back): results delivered while it was away, jobs that vanished added again.
// SQLite in memory, jobs in a map.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { reconcile } from '../../../src/hub/reconciler.js';
import { formatFailure, type BuildJobData } from '../../../src/protocol/build-jobs.js';
import { graphFixture, h, result } from '../../helpers/hub-graph.js';

const silent = pino({ level: 'silent' });
const data = (name: string, attempt = 1) => ({ drvHash: h(name), attempt }) as BuildJobData;

test('a job that completed while the hub was away: the build succeeds and its dependents get jobs', async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], b: ['a'] }));
  g.jobs.set(h('a'), { state: 'completed', data: data('a'), returnvalue: result(1, 'far-spoke') });
  const stats = await reconcile({ builds: g.builds, dispatcher: g.dispatcher, graph: g.graph, logger: silent });
  assert.deepEqual(stats, { completed: 1, unqueued: 1 });
  assert.equal(g.status('a'), 'succeeded');
  assert.equal(g.builds.get(h('a'))?.spoke, 'far-spoke');
  assert.equal(g.jobs.get(h('b'))?.state, 'waiting', 'b got its job');
});

test("a job that failed while the hub was away: the build fails with its reason's kind, dependents too", async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], b: ['a'] }));
  g.jobs.set(h('a'), {
    state: 'failed',
    data: data('a'),
    failedReason: formatFailure('timeout', 'silent for 3600 s'),
    processedBy: 'spoke-2',
  });
  await reconcile({ builds: g.builds, dispatcher: g.dispatcher, graph: g.graph, logger: silent });
  const a = g.builds.get(h('a'))!;
  assert.deepEqual([a.status, a.failureKind, a.error, a.spoke], ['failed', 'timeout', 'silent for 3600 s', 'spoke-2']);
  assert.equal(g.status('b'), 'dependency-failed');
});

test('an active job marks its build running on its spoke; a waiting one puts a running build back', async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], c: [] }));
  g.jobs.set(h('a'), { state: 'active', data: data('a'), processedBy: 'spoke-3', processedOn: 1234 });
  g.graph.running(h('c'), 1, 'spoke-1', 1000);
  g.jobs.set(h('c'), { state: 'waiting', data: data('c') });
  await reconcile({ builds: g.builds, dispatcher: g.dispatcher, graph: g.graph, logger: silent });
  const a = g.builds.get(h('a'))!;
  assert.deepEqual([a.status, a.spoke, a.startedAt], ['running', 'spoke-3', 1234]);
  assert.equal(g.status('c'), 'queued', 'its spoke lost it (stalled): waiting again');
});

test('a vanished job is added again, for a queued build and a running one (Redis came back empty)', async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], c: [] }));
  g.graph.running(h('c'), 1, 'spoke-1', 1000);
  g.jobs.clear();
  g.added.length = 0;
  const stats = await reconcile({ builds: g.builds, dispatcher: g.dispatcher, graph: g.graph, logger: silent });
  assert.deepEqual(stats, { missing: 2 });
  assert.deepEqual(g.added.sort(), [h('a'), h('c')]);
  assert.deepEqual(
    ['a', 'c'].map((n) => [g.status(n), g.builds.get(h(n))?.enqueued, g.builds.get(h(n))?.attempt]),
    [
      ['queued', true, 1],
      ['queued', true, 1],
    ],
  );
});

test("a job of an earlier attempt is removed and the record's attempt added in its place", async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [] }));
  g.graph.failed(h('a'), 1, { kind: 'infrastructure', error: 'gone', spoke: null });
  g.builds.requeue(h('a'), { bump: true, cacheId: g.builds.get(h('a'))!.cacheId, priority: 0 });
  g.builds.markEnqueued(h('a'));
  g.jobs.set(h('a'), { state: 'failed', data: data('a', 1), failedReason: 'infrastructure: gone' });
  await reconcile({ builds: g.builds, dispatcher: g.dispatcher, graph: g.graph, logger: silent });
  assert.equal(g.status('a'), 'queued', 'the old failure is not taken for the new attempt');
  assert.equal(g.jobs.get(h('a'))?.data.attempt, 2);
  assert.equal(g.jobs.get(h('a'))?.state, 'waiting');
});

test('builds without a job are settled: enqueued once their inputs succeeded, else left waiting', async (t) => {
  const g = graphFixture(t);
  g.record({ a: [], b: ['a'] });
  const stats = await reconcile({ builds: g.builds, dispatcher: g.dispatcher, graph: g.graph, logger: silent });
  assert.deepEqual(stats, { unqueued: 2 });
  assert.deepEqual(g.added, [h('a')]);
  assert.equal(g.builds.get(h('b'))?.enqueued, false);
});
