import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkName,
  commitStatusOf,
  evaluationState,
  jobState,
  wantedReports,
} from '../../../src/forge/report-states.js';
import { remoteOf } from '../../../src/forge/poller.js';
import { pushedCommit } from '../../../src/http/routes/ci-api.js';
import type { EvaluationView, JobView } from '../../../src/hub/views.js';

const job = (over: Partial<JobView>): JobView => ({
  attr: 'checks.x86_64-linux.a',
  system: 'x86_64-linux',
  drvPath: '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a.drv',
  drvHash: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  status: 'queued',
  outputs: { out: '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-a' },
  error: null,
  waitingFor: null,
  attempt: 1,
  spoke: null,
  startedAt: null,
  finishedAt: null,
  durationMs: null,
  failureKind: null,
  failedDependency: null,
  fromFailureCache: false,
  ...over,
});

const evaluation = (over: Partial<EvaluationView>): EvaluationView => ({
  id: 3,
  project: 'p',
  ref: 'main',
  flakeUrl: 'git+file:///r',
  lockedUrl: null,
  revision: null,
  status: 'building',
  priority: 0,
  error: null,
  supersededBy: null,
  jobset: 'main',
  commit: 'c'.repeat(40),
  trigger: 'push',
  prNumber: null,
  triggeredBy: null,
  createdAt: '2026-01-01T00:00:00.000Z',
  startedAt: null,
  evaluatedAt: null,
  finishedAt: null,
  builds: {},
  ...over,
});

test('a job moves queued → in_progress → completed, with the conclusion its build earned', () => {
  assert.equal(jobState(job({ status: 'queued' })).state, 'queued');
  assert.equal(jobState(job({ status: 'running', spoke: 's1' })).state, 'in_progress');
  assert.deepEqual(
    [jobState(job({ status: 'succeeded' })), jobState(job({ status: 'cached' }))].map((s) => [s.state, s.conclusion]),
    [
      ['completed', 'success'],
      ['completed', 'success'],
    ],
  );
  const failed = jobState(job({ status: 'failed', error: 'builder failed with exit code 1\nmore' }));
  assert.deepEqual(
    [failed.state, failed.conclusion, failed.summary],
    ['completed', 'failure', 'builder failed with exit code 1'],
  );
  assert.equal(jobState(job({ status: 'failed', failureKind: 'timeout' })).conclusion, 'timed_out');
  assert.match(jobState(job({ status: 'failed', fromFailureCache: true })).title, /failed before/);
  assert.match(
    jobState(job({ status: 'dependency-failed', failedDependency: '/nix/store/x-dep.drv' })).summary,
    /x-dep\.drv/,
  );
  assert.equal(jobState(job({ status: 'cancelled' })).conclusion, 'cancelled');
  const broken = jobState(job({ status: 'eval-failed', error: 'error: attribute missing' }));
  assert.deepEqual([broken.conclusion, broken.text], ['failure', 'error: attribute missing']);
});

test("the evaluation's own check fails with the error text when the evaluation fails", () => {
  assert.equal(evaluationState(evaluation({ status: 'pending' })).state, 'queued');
  assert.equal(evaluationState(evaluation({ status: 'evaluating' })).state, 'in_progress');
  const failed = evaluationState(
    evaluation({ status: 'failed', error: 'error: flake.nix: syntax error\n  at 3:1', jobs: [] }),
  );
  assert.deepEqual(
    [failed.state, failed.conclusion, failed.text],
    ['completed', 'failure', 'error: flake.nix: syntax error\n  at 3:1'],
  );
  const ok = evaluationState(evaluation({ jobs: [job({}), job({ attr: 'b' })] }));
  assert.deepEqual([ok.conclusion, ok.title], ['success', '2 attributes evaluated']);
  assert.equal(
    evaluationState(evaluation({ jobs: [job({ status: 'eval-failed', error: 'x' })] })).conclusion,
    'failure',
  );
});

test('wanted reports: one per attribute plus the evaluation, linking to the UI', () => {
  const w = wantedReports(
    evaluation({ jobs: [job({}), job({ attr: 'b', drvHash: null, status: 'eval-failed' })] }),
    'o/r',
    'c'.repeat(40),
    'https://ci.example',
  );
  assert.deepEqual(
    w.map((r) => [checkName(r.name), r.detailsUrl]),
    [
      ['narhub: evaluation', 'https://ci.example/ui/evaluations/3'],
      ['narhub: checks.x86_64-linux.a', 'https://ci.example/ui/builds/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'],
      ['narhub: b', 'https://ci.example/ui/evaluations/3#b'],
    ],
  );
});

test('commit statuses map the check states onto pending, success, failure and error', () => {
  const base = { name: 'a', repo: 'o/r', sha: 'x', summary: '', text: null, detailsUrl: null };
  assert.equal(commitStatusOf({ ...base, state: 'in_progress', conclusion: null, title: 't' }).state, 'pending');
  assert.equal(commitStatusOf({ ...base, state: 'completed', conclusion: 'success', title: 't' }).state, 'success');
  assert.equal(commitStatusOf({ ...base, state: 'completed', conclusion: 'timed_out', title: 't' }).state, 'failure');
  assert.equal(commitStatusOf({ ...base, state: 'completed', conclusion: 'cancelled', title: 't' }).state, 'error');
  assert.equal(
    commitStatusOf({ ...base, state: 'completed', conclusion: 'failure', title: 'x'.repeat(300) }).description.length,
    140,
  );
});

test('the git remote behind a flake reference', () => {
  assert.equal(remoteOf('git+https://git.example.org/me/repo.git?ref=main'), 'https://git.example.org/me/repo.git');
  assert.equal(remoteOf('git+file:///srv/repo'), '/srv/repo');
  assert.equal(remoteOf('git+ssh://git@host/r'), 'ssh://git@host/r');
  assert.equal(remoteOf('github:NixOS/nix/2.8'), 'https://github.com/NixOS/nix.git');
  assert.equal(remoteOf('path:/src'), null);
});

test("a forge's push webhook names its branch and commit; a deletion names no commit", () => {
  const sha = 'a'.repeat(40);
  assert.deepEqual(pushedCommit({ ref: 'refs/heads/main', after: sha }), { branch: 'main', commit: sha });
  assert.deepEqual(pushedCommit({ ref: 'refs/heads/dev', checkout_sha: sha }), { branch: 'dev', commit: sha });
  assert.deepEqual(pushedCommit({ ref: 'refs/heads/x', after: '0'.repeat(40) }), { branch: 'x' });
  assert.deepEqual(pushedCommit({ ref: 'refs/tags/v1', after: 'nope' }), {});
  assert.deepEqual(pushedCommit(undefined), {});
});
