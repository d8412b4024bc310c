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
import { evaluationView, jobView } from '../../helpers/hub-views.js';

test('a job moves queued → in_progress → completed, with the conclusion its build earned', () => {
  assert.equal(jobState(jobView({ status: 'queued' })).state, 'queued');
  assert.equal(jobState(jobView({ status: 'running', spoke: 's1' })).state, 'in_progress');
  assert.deepEqual(
    [jobState(jobView({ status: 'succeeded' })), jobState(jobView({ status: 'cached' }))].map((s) => [
      s.state,
      s.conclusion,
    ]),
    [
      ['completed', 'success'],
      ['completed', 'success'],
    ],
  );
  const failed = jobState(jobView({ status: 'failed', error: 'builder failed with exit code 1\nmore' }));
  assert.deepEqual(
    [failed.state, failed.conclusion, failed.summary],
    ['completed', 'failure', 'builder failed with exit code 1'],
  );
  assert.equal(jobState(jobView({ status: 'failed', failureKind: 'timeout' })).conclusion, 'timed_out');
  assert.match(jobState(jobView({ status: 'failed', fromFailureCache: true })).title, /failed before/);
  assert.match(
    jobState(jobView({ status: 'dependency-failed', failedDependency: '/nix/store/x-dep.drv' })).summary,
    /x-dep\.drv/,
  );
  assert.equal(jobState(jobView({ status: 'cancelled' })).conclusion, 'cancelled');
  const broken = jobState(jobView({ status: 'eval-failed', error: 'error: attribute missing' }));
  assert.deepEqual([broken.conclusion, broken.text], ['failure', 'error: attribute missing']);
});

test("the evaluation's own check fails with the error text when the evaluation fails", () => {
  assert.equal(evaluationState(evaluationView({ status: 'pending' })).state, 'queued');
  assert.equal(evaluationState(evaluationView({ status: 'evaluating' })).state, 'in_progress');
  const failed = evaluationState(
    evaluationView({ status: 'failed', error: 'error: flake.nix: syntax error\n  at 3:1', jobs: [] }),
  );
  assert.deepEqual(
    [failed.state, failed.conclusion, failed.text],
    ['completed', 'failure', 'error: flake.nix: syntax error\n  at 3:1'],
  );
  const ok = evaluationState(evaluationView({ jobs: [jobView({}), jobView({ attr: 'b' })] }));
  assert.deepEqual([ok.conclusion, ok.title], ['success', '2 attributes evaluated']);
  assert.equal(
    evaluationState(evaluationView({ jobs: [jobView({ status: 'eval-failed', error: 'x' })] })).conclusion,
    'failure',
  );
});

test('wanted reports: one per attribute plus the evaluation, linking to the UI', () => {
  const w = wantedReports(
    evaluationView({ jobs: [jobView({}), jobView({ attr: 'b', drvHash: null, status: 'eval-failed' })] }),
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
