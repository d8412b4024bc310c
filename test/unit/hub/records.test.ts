import assert from 'node:assert/strict';
import { test } from 'node:test';
import { attrHistoryView, transitionOf } from '../../../src/hub/records.js';
import type { AttrHistoryRow } from '../../../src/db/history-repo.js';
import { flakeRefAt } from '../../../src/hub/evaluator.js';

const row = (evalId: number, buildStatus: string | null, error: string | null = null): AttrHistoryRow => ({
  evalId,
  jobset: 'main',
  commit: `c${evalId}`,
  evalStatus: 'succeeded',
  createdAt: evalId * 1000,
  drvHash: error ? null : `h${evalId}`,
  error,
  buildStatus,
  startedAt: 0,
  finishedAt: 1500,
  spoke: 's',
});

test('an attribute history row says its outcome, whether it passed, and how long it took', () => {
  const v = attrHistoryView(row(1, 'succeeded'));
  assert.deepEqual([v.outcome, v.passing, v.durationMs, v.commit], ['succeeded', true, 1500, 'c1']);
  assert.deepEqual([attrHistoryView(row(2, null)).outcome, attrHistoryView(row(2, null)).passing], ['cached', true]);
  assert.equal(attrHistoryView(row(3, null, 'error: x')).outcome, 'eval-failed');
  assert.equal(attrHistoryView(row(4, 'running')).passing, null);
});

test('which commit broke an attribute, and which fixed it, skipping undecided evaluations', () => {
  // Newest first: 5 running (undecided), 4 and 3 failed, 2 passed, 1 failed.
  const h = [
    row(5, 'running'),
    row(4, 'failed'),
    row(3, 'dependency-failed'),
    row(2, 'succeeded'),
    row(1, 'failed'),
  ].map(attrHistoryView);
  const t = transitionOf('a', h);
  assert.equal(t.state, 'failing');
  assert.equal(t.since?.commit, 'c3', 'the commit after the last passing one broke it');
  const fixed = transitionOf('a', [row(3, 'succeeded'), row(2, 'failed')].map(attrHistoryView));
  assert.deepEqual([fixed.state, fixed.since?.commit], ['passing', 'c3']);
  assert.deepEqual(transitionOf('a', [attrHistoryView(row(1, 'queued'))]), {
    attr: 'a',
    state: 'pending',
    since: null,
  });
});

test('a commit is evaluated on its branch with rev=', () => {
  const sha = 'f'.repeat(40);
  assert.equal(flakeRefAt('git+file:///r', 'main', sha), `git+file:///r?ref=main&rev=${sha}`);
  assert.equal(
    flakeRefAt('git+file:///r?ref=old', 'refs/pull/7/head', sha),
    `git+file:///r?ref=refs%2Fpull%2F7%2Fhead&rev=${sha}`,
  );
  assert.equal(flakeRefAt('git+file:///r', null, sha), `git+file:///r?rev=${sha}`);
  assert.equal(flakeRefAt('git+file:///r', sha), `git+file:///r?rev=${sha}`);
});
