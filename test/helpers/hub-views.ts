// A build (JobView) and an evaluation (EvaluationView) as the hub's API shows them, with plain
// defaults the caller overrides: the rows tests of what the forge reports are made of.
import type { EvaluationView, JobView } from '../../src/hub/views.js';

/** A queued build of `checks.x86_64-linux.a` with one output. */
export function jobView(over: Partial<JobView> = {}): JobView {
  return {
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
  };
}

/** Evaluation 3 of project `p`, building commit c…c of main, pushed. */
export function evaluationView(over: Partial<EvaluationView> = {}): EvaluationView {
  return {
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
  };
}
