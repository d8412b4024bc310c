// The hub's questions to the database about builds, on a real SQLite database with the real
// migrations: whether any build of an evaluation is still open (asked after every finished
// build, so it must not count them all), how many are in each state, and a build's inputs.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { createBuildsRepo, type BuildsRepo } from '../../../src/db/builds-repo.js';
import { createCachesRepo } from '../../../src/db/caches-repo.js';
import { createEvaluationsRepo } from '../../../src/db/evaluations-repo.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { createProjectsRepo } from '../../../src/db/projects-repo.js';
import { makeTempDir } from '../../helpers/tmp.js';

async function openRepos(t: Parameters<typeof makeTempDir>[0]) {
  const dir = await makeTempDir(t, 'narhub-evals-');
  const db = openDatabase(join(dir, 'narhub.sqlite'));
  t.after(() => db.close());
  migrate(db, defaultMigrationsDir());
  const cache = createCachesRepo(db).insert('main', {
    private: false,
    priority: 40,
    redirectNars: false,
    redirectExpiry: 600,
    recompressToZstd: false,
    retention: null,
    quota: null,
    uploaderKeys: [],
    refuseUnknownSignatures: false,
    maxUploaderSignatures: 8,
  });
  const project = createProjectsRepo(db).insert('p', {
    flake: 'path:/x',
    ref: null,
    systems: ['x86_64-linux'],
    attrs: ['checks'],
    cacheId: cache.id,
    forgeRepo: null,
    forkPolicy: 'collaborators',
    forkUsers: [],
    pollInterval: null,
    notifyUrl: null,
    priority: 0,
  });
  const evaluations = createEvaluationsRepo(db);
  const builds: BuildsRepo = createBuildsRepo(db);
  return { cache, project, evaluations, builds };
}

test("a build's inputs, as the hub puts them in its job: their .drv and outputs", async (t) => {
  const { cache, builds } = await openRepos(t);
  const [a, b] = ['a'.repeat(32), 'b'.repeat(32)];
  builds.insert({
    drvHash: a,
    drvPath: `${a}-a.drv`,
    system: 'x86_64-linux',
    requiredFeatures: [],
    outputs: { out: `${'c'.repeat(32)}-a`, dev: `${'d'.repeat(32)}-a-dev` },
    queue: 'build-x86_64-linux',
    cacheId: cache.id,
    priority: 0,
  });
  builds.insert({
    drvHash: b,
    drvPath: `${b}-b.drv`,
    system: 'x86_64-linux',
    requiredFeatures: [],
    outputs: {},
    queue: 'build-x86_64-linux',
    cacheId: cache.id,
    priority: 0,
  });
  builds.addDep(b, a);
  assert.deepEqual(builds.inputs(b), [
    { drvPath: `${a}-a.drv`, outputs: { out: `${'c'.repeat(32)}-a`, dev: `${'d'.repeat(32)}-a-dev` } },
  ]);
  assert.deepEqual(builds.inputs(a), []);
});

test('hasOpenBuilds: true while a build of the evaluation is queued or running, whatever others hold', async (t) => {
  const { cache, project, evaluations, builds } = await openRepos(t);
  const mine = evaluations.insert({ projectId: project.id, ref: null, flakeUrl: 'path:/x', priority: 0 });
  const other = evaluations.insert({ projectId: project.id, ref: null, flakeUrl: 'path:/x', priority: 0 });

  const hashes = Array.from({ length: 5 }, (_, i) => String(i).repeat(32));
  for (const h of hashes) {
    builds.insert({
      drvHash: h,
      drvPath: `${h}-b.drv`,
      system: 'x86_64-linux',
      requiredFeatures: [],
      outputs: {},
      queue: 'build-x86_64-linux',
      cacheId: cache.id,
      priority: 0,
    });
    evaluations.linkBuild(mine.id, h);
  }
  // Another evaluation's open build says nothing about this one.
  const foreign = 'f'.repeat(32);
  builds.insert({
    drvHash: foreign,
    drvPath: `${foreign}-f.drv`,
    system: 'x86_64-linux',
    requiredFeatures: [],
    outputs: {},
    queue: 'build-x86_64-linux',
    cacheId: cache.id,
    priority: 0,
  });
  evaluations.linkBuild(other.id, foreign);

  assert.equal(evaluations.hasOpenBuilds(mine.id), true);
  for (const [i, h] of hashes.entries()) {
    assert.equal(evaluations.hasOpenBuilds(mine.id), true, `build ${i} is still open`);
    builds.markRunning(h, 1, Date.now(), 'spoke');
    assert.equal(evaluations.hasOpenBuilds(mine.id), true, `build ${i} runs`);
    if (i % 2 === 0) builds.succeed(h, 1, { outputs: {}, spoke: 'spoke', startedAt: 1, finishedAt: 2, logPath: null });
    else builds.fail(h, 1, { kind: 'build', error: 'boom', spoke: 'spoke' });
  }
  assert.equal(evaluations.hasOpenBuilds(mine.id), false);
  assert.equal(evaluations.hasOpenBuilds(other.id), true);
  assert.deepEqual(evaluations.buildCounts(mine.id), { succeeded: 3, failed: 2 });
});
