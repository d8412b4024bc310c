// The DAG over BullMQ: which builds get a job and when, what a failure or cancellation does to
// what waits on it, restarts, and when an evaluation is over. SQLite in memory, jobs in a map.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { graphFixture, h, result, SYSTEM } from '../../helpers/hub-graph.js';

test('settle: only builds whose inputs all succeeded get a job; the others wait without one', async (t) => {
  const g = graphFixture(t);
  // d needs b and c, which both need a (a diamond).
  const order = g.record({ a: [], b: ['a'], c: ['a'], d: ['b', 'c'] });
  await g.graph.advance(order);
  assert.deepEqual(g.added, [h('a')]);
  assert.deepEqual(
    ['a', 'b', 'c', 'd'].map((n) => g.builds.get(h(n))?.enqueued),
    [true, false, false, false],
  );
  // Settling again adds nothing twice.
  await g.graph.advance(order);
  assert.deepEqual(g.added, [h('a')]);
});

test('a success enqueues the dependents it completes, and only those', async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], b: ['a'], c: ['a'], d: ['b', 'c'] }));
  await g.graph.succeeded(h('a'), 1, result(1));
  assert.equal(g.status('a'), 'succeeded');
  assert.deepEqual(g.added, [h('a'), h('b'), h('c')]);
  await g.graph.succeeded(h('b'), 1, result(1));
  assert.deepEqual(g.added, [h('a'), h('b'), h('c')], 'd still waits for c');
  await g.graph.succeeded(h('c'), 1, result(1));
  assert.deepEqual(g.added, [h('a'), h('b'), h('c'), h('d')]);
  assert.equal(g.builds.get(h('a'))?.spoke, 'spoke-1');
});

test("a result of another attempt than the record's changes nothing", async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], b: ['a'] }));
  await g.graph.succeeded(h('a'), 2, result(2));
  g.graph.failed(h('a'), 0, { kind: 'build', error: 'late', spoke: null });
  assert.equal(g.status('a'), 'queued');
  assert.deepEqual(g.added, [h('a')]);
});

test('a failure makes all waiting on it dependency-failed, naming the root, and fails the evaluation', async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], b: ['a'], c: ['b'], x: [] }));
  g.graph.failed(h('a'), 1, { kind: 'build', error: 'exit 1', spoke: 'spoke-1' });
  assert.equal(g.status('a'), 'failed');
  assert.equal(g.builds.get(h('a'))?.failureKind, 'build');
  for (const n of ['b', 'c']) {
    assert.equal(g.status(n), 'dependency-failed');
    assert.equal(g.builds.get(h(n))?.failedDep, h('a'), `${n} names the build that failed, not its direct input`);
  }
  assert.equal(g.evaluations.get(g.evaluation.id)?.status, 'building', 'x is still open');
  await g.graph.succeeded(h('x'), 1, result(1));
  assert.equal(g.evaluations.get(g.evaluation.id)?.status, 'failed');
});

test('builds are counted by status (the narhub_hub_builds gauge), statuses no build has left out', async (t) => {
  const g = graphFixture(t);
  assert.deepEqual(g.builds.countByStatus(), {});
  await g.graph.advance(g.record({ a: [], b: ['a'], c: ['b'], x: [], y: [] }));
  assert.deepEqual(g.builds.countByStatus(), { queued: 5 });
  g.graph.failed(h('a'), 1, { kind: 'build', error: 'exit 1', spoke: 'spoke-1' });
  await g.graph.succeeded(h('x'), 1, result(1));
  assert.deepEqual(g.builds.countByStatus(), { failed: 1, 'dependency-failed': 2, succeeded: 1, queued: 1 });
});

test('an evaluation succeeds once its last build does, and is cancelled when one of its builds is', async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], b: ['a'] }));
  await g.graph.succeeded(h('a'), 1, result(1));
  assert.equal(g.evaluations.get(g.evaluation.id)?.status, 'building');
  await g.graph.succeeded(h('b'), 1, result(1));
  assert.equal(g.evaluations.get(g.evaluation.id)?.status, 'succeeded');

  const c = graphFixture(t);
  await c.graph.advance(c.record({ a: [], b: ['a'] }));
  assert.equal(c.graph.cancelled(h('a'), 'by a test'), true);
  assert.equal(c.status('a'), 'cancelled');
  assert.equal(c.status('b'), 'cancelled', 'what waits on a cancelled build is cancelled with it');
  assert.equal(c.evaluations.get(c.evaluation.id)?.status, 'cancelled');
  assert.equal(c.graph.cancelled(h('a'), 'again'), false, 'cancelling twice changes nothing');
});

test('an evaluation whose builds all succeeded still fails when one of its attributes did not evaluate', async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [] }));
  const job = { evalId: g.evaluation.id, system: SYSTEM, outputs: null };
  g.evaluations.insertJob({ ...job, attr: 'checks.x.ok', drvPath: null, drvHash: h('a'), error: null });
  g.evaluations.insertJob({ ...job, attr: 'checks.x.broken', drvPath: null, drvHash: null, error: 'boom' });
  await g.graph.succeeded(h('a'), 1, result(1));
  assert.equal(g.evaluations.get(g.evaluation.id)?.status, 'failed');

  const ok = graphFixture(t);
  await ok.graph.advance(ok.record({ a: [] }));
  ok.evaluations.insertJob({
    ...job,
    evalId: ok.evaluation.id,
    attr: 'checks.x.ok',
    drvPath: null,
    drvHash: h('a'),
    error: null,
  });
  await ok.graph.succeeded(h('a'), 1, result(1));
  assert.equal(ok.evaluations.get(ok.evaluation.id)?.status, 'succeeded');
});

test('a job that cannot be added leaves the build flagged for a retry, which a later advance makes', async (t) => {
  const g = graphFixture(t);
  g.control.failAdds = true;
  const order = g.record({ a: [] });
  await g.graph.advance(order);
  assert.equal(g.builds.get(h('a'))?.enqueued, false);
  assert.equal(g.status('a'), 'queued');
  g.control.failAdds = false;
  await g.graph.advance(order);
  assert.equal(g.builds.get(h('a'))?.enqueued, true);
  assert.deepEqual(g.added, [h('a')]);
});

test('restart: a new attempt, its dependency-failed dependents reset, the evaluation reopened', async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], b: ['a'], c: ['b'] }));
  g.graph.failed(h('a'), 1, { kind: 'build', error: 'exit 1', spoke: null });
  assert.equal(g.evaluations.get(g.evaluation.id)?.status, 'failed');

  await g.graph.restart(g.builds.get(h('a'))!);
  assert.deepEqual(
    ['a', 'b', 'c'].map((n) => [g.status(n), g.builds.get(h(n))?.attempt]),
    [
      ['queued', 2],
      ['queued', 1],
      ['queued', 1],
    ],
    'only the restarted build counts an attempt; its dependents never ran',
  );
  assert.equal(g.evaluations.get(g.evaluation.id)?.status, 'building');
  assert.deepEqual(g.added, [h('a'), h('a')], 'the new attempt gets a job, its dependents wait for it');
  assert.equal(g.jobs.get(h('a'))?.data.attempt, 2);

  await g.graph.succeeded(h('a'), 2, result(2));
  assert.deepEqual(g.added.at(-1), h('b'));
});

test('restart of a cancelled build counts a new attempt for its cancelled dependents too', async (t) => {
  const g = graphFixture(t);
  await g.graph.advance(g.record({ a: [], b: ['a'] }));
  g.graph.cancelled(h('a'), 'by a test');
  await g.graph.restart(g.builds.get(h('a'))!);
  assert.deepEqual(
    ['a', 'b'].map((n) => [g.status(n), g.builds.get(h(n))?.attempt]),
    [
      ['queued', 2],
      ['queued', 2],
    ],
  );
});
