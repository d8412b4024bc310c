// The forge reporter against the GitHub stand-in (every request checked against GitHub's OpenAPI
// description), with a real SQLite database and an evaluation whose view the test controls.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { createCachesRepo } from '../../../src/db/caches-repo.js';
import { createEvaluationsRepo } from '../../../src/db/evaluations-repo.js';
import { createForgeRepo } from '../../../src/db/forge-repo.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { createProjectsRepo } from '../../../src/db/projects-repo.js';
import { createForgeClient } from '../../../src/forge/forge-client.js';
import { createReporter } from '../../../src/forge/reporter.js';
import type { JobView } from '../../../src/hub/views.js';
import { startGitHubStandIn } from '../../helpers/github-standin.js';
import { waitFor } from '../../helpers/hub.js';
import { evaluationView, jobView } from '../../helpers/hub-views.js';
import type { Cleanup } from '../../helpers/tmp.js';

const SHA = 'a'.repeat(40);

async function setup(t: Cleanup, mode: 'checks' | 'statuses', interval = 0) {
  const gh = await startGitHubStandIn(t);
  const dir = mkdtempSync(join(tmpdir(), 'narhub-reporter-'));
  writeFileSync(join(dir, 'token'), 'ghp_x');
  const db = openDatabase(join(dir, 'db.sqlite'));
  migrate(db, defaultMigrationsDir());
  const cache = createCachesRepo(db).insert('main', {
    private: false,
    priority: 40,
    redirectNars: false,
    redirectExpiry: 300,
    recompressToZstd: false,
    retention: null,
    quota: null,
    uploaderKeys: [],
    refuseUnknownSignatures: false,
    maxUploaderSignatures: 8,
  });
  const p = createProjectsRepo(db).insert('p', {
    flake: 'git+file:///r',
    ref: 'main',
    systems: ['x86_64-linux'],
    attrs: ['checks'],
    cacheId: cache.id,
    priority: 0,
    forgeRepo: 'octo/repo',
    forkPolicy: 'collaborators',
    forkUsers: [],
    pollInterval: null,
    notifyUrl: null,
  });
  const e = createEvaluationsRepo(db).insert({
    projectId: p.id,
    ref: 'main',
    flakeUrl: 'git+file:///r',
    priority: 0,
    jobset: 'main',
    commitSha: SHA,
  });
  let view = evaluationView({ id: e.id, commit: SHA, createdAt: new Date().toISOString(), jobs: [] });
  let bump = 0;
  const touch = db.prepare('UPDATE evaluations SET evaluated_at = ? WHERE id = ?');
  const reporter = createReporter({
    db,
    forge: createForgeRepo(db),
    client: createForgeClient({
      apiUrl: gh.url,
      tokenFile: join(dir, 'token'),
      report: mode,
      minRequestInterval: interval,
    }),
    evaluation: async () => view,
    mode,
    uiBase: () => 'http://narhub.test',
    minRequestIntervalMs: interval,
    logger: pino({ level: 'silent' }),
    syncIntervalMs: 20,
  });
  t.after(() => reporter.close());
  return {
    gh,
    reporter,
    /** Changes what the evaluation shows (and its fingerprint, so the reporter looks again). */
    show(jobs: Partial<JobView>[], status = 'building') {
      view = { ...view, status, jobs: jobs.map((j) => jobView({ outputs: {}, ...j })) };
      touch.run(++bump, e.id);
    },
  };
}

test('states changing faster than sent are coalesced: the newest is sent, never an older one after it', async (t) => {
  const { gh, reporter, show } = await setup(t, 'checks', 300);
  reporter.start();
  show([{ status: 'queued' }]);
  await waitFor('the first check run', async () => gh.checkRunNamed('narhub: checks.x86_64-linux.a'));
  // Three changes within one request interval: only the last is sent.
  show([{ status: 'running', spoke: 's' }]);
  show([{ status: 'succeeded', spoke: 's', durationMs: 1000 }]);
  show([{ status: 'failed', spoke: 's', error: 'builder failed' }]);
  await waitFor(
    'the final state',
    async () => gh.checkRunNamed('narhub: checks.x86_64-linux.a')?.conclusion === 'failure',
    10_000,
    20,
  );
  await new Promise((r) => setTimeout(r, 800));
  const run = gh.checkRunNamed('narhub: checks.x86_64-linux.a')!;
  const sent = run.history.map((h) => `${h.status}/${h.conclusion ?? ''}`);
  assert.equal(sent.at(-1), 'completed/failure', sent.join(' '));
  assert.ok(!sent.includes('completed/success'), `the superseded success was never sent: ${sent.join(' ')}`);
  assert.equal(
    [...gh.checkRuns.values()].filter((c) => c.name === 'narhub: checks.x86_64-linux.a').length,
    1,
    'created once, then updated',
  );
  // Paced from send to send (300 ms); arrival times add the client's own delay to each, which
  // differs between a new connection and a reused one on a loaded machine: the span tells.
  const w = gh.writeTimes;
  assert.ok(w.length >= 3);
  assert.ok(
    w.at(-1)! - w[0]! >= (w.length - 1) * 300 - 200,
    `requests paced by minRequestInterval: ${w.map((x) => x - w[0]!)}`,
  );
  assert.deepEqual(gh.violations, []);
});

test('a rate limit pauses every update until Retry-After; a forge that is down is retried until back', async (t) => {
  const { gh, reporter, show } = await setup(t, 'checks');
  gh.rateLimitNext(1, 2);
  reporter.start();
  show(
    [{ status: 'succeeded' }, { attr: 'checks.x86_64-linux.b', drvHash: 'b'.repeat(32), status: 'queued' }],
    'building',
  );
  await waitFor(
    'both checks',
    async () => gh.checkRunNamed('narhub: checks.x86_64-linux.b') && gh.checkRunNamed('narhub: evaluation'),
    15_000,
    20,
  );
  const [limited, next] = gh.writeTimes;
  assert.ok(next! - limited! >= 1900, `waited for Retry-After: ${next! - limited!} ms`);
  gh.down = true;
  show(
    [{ status: 'succeeded' }, { attr: 'checks.x86_64-linux.b', drvHash: 'b'.repeat(32), status: 'succeeded' }],
    'succeeded',
  );
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(
    gh.checkRunNamed('narhub: checks.x86_64-linux.b')!.status,
    'queued',
    'nothing reached a forge that is down',
  );
  gh.down = false;
  await waitFor(
    'the update after the forge came back',
    async () => gh.checkRunNamed('narhub: checks.x86_64-linux.b')!.status === 'completed',
    15_000,
    50,
  );
  assert.deepEqual(gh.violations, []);
});

test('a forge without checks gets one commit status per attribute and one for the evaluation', async (t) => {
  const { gh, reporter, show } = await setup(t, 'statuses');
  reporter.start();
  show([
    { status: 'running' },
    { attr: 'checks.x86_64-linux.b', drvHash: 'b'.repeat(32), status: 'failed', error: 'nope' },
  ]);
  await waitFor('three statuses', async () => gh.statuses.length >= 3, 10_000, 20);
  show(
    [
      { status: 'succeeded' },
      { attr: 'checks.x86_64-linux.b', drvHash: 'b'.repeat(32), status: 'failed', error: 'nope' },
    ],
    'failed',
  );
  await waitFor(
    'the success',
    async () => gh.statuses.some((s) => s.context === 'narhub: checks.x86_64-linux.a' && s.state === 'success'),
    10_000,
    20,
  );
  const last = new Map(gh.statuses.map((s) => [s.context, s]));
  assert.deepEqual([...last.entries()].map(([c, s]) => [c, s.state, s.sha]).sort(), [
    ['narhub: checks.x86_64-linux.a', 'success', SHA],
    ['narhub: checks.x86_64-linux.b', 'failure', SHA],
    ['narhub: evaluation', 'success', SHA],
  ]);
  assert.equal(last.get('narhub: checks.x86_64-linux.b')!.target_url, `http://narhub.test/ui/builds/${'b'.repeat(32)}`);
  assert.equal(
    gh.statuses.filter((s) => s.context === 'narhub: checks.x86_64-linux.b').length,
    1,
    'an unchanged state is not sent again',
  );
  assert.deepEqual(gh.violations, []);
});
