// The hub's build graph on a `:memory:` SQLite database with the real migrations, and an
// in-memory stand-in for the BullMQ dispatcher (jobs by drvHash, with their state), for fast
// unit tests of the graph's and the reconciler's decisions.
import Sqlite from 'better-sqlite3';
import pino from 'pino';
import { createBuildsRepo } from '../../src/db/builds-repo.js';
import { createCachesRepo } from '../../src/db/caches-repo.js';
import { createEvaluationsRepo } from '../../src/db/evaluations-repo.js';
import { defaultMigrationsDir, migrate } from '../../src/db/migrate.js';
import { createProjectsRepo } from '../../src/db/projects-repo.js';
import { createBuildGraph } from '../../src/hub/build-graph.js';
import { projectFields } from '../../src/hub/projects.js';
import type { BuildJob, Dispatcher, JobState } from '../../src/hub/dispatcher.js';
import type { BuildJobData } from '../../src/protocol/build-jobs.js';
import type { Cleanup } from './tmp.js';

export interface FakeJob {
  state: Exclude<JobState, 'missing'>;
  data: BuildJobData;
  returnvalue?: unknown;
  failedReason?: string;
  processedBy?: string;
  processedOn?: number;
  removed?: boolean;
}

/** A dispatcher whose queues are a map; `failAdds` makes adding jobs throw, as with Redis away. */
export function fakeDispatcher() {
  const jobs = new Map<string, FakeJob>();
  const added: string[] = [];
  const control = { failAdds: false };
  const asJob = (hash: string, j: FakeJob) =>
    ({
      id: `build-${hash}`,
      data: j.data,
      returnvalue: j.returnvalue,
      failedReason: j.failedReason,
      processedBy: j.processedBy,
      processedOn: j.processedOn,
      remove: async () => {
        jobs.delete(hash);
      },
    }) as unknown as BuildJob;
  const dispatcher = {
    async enqueue(_queue: string, data: BuildJobData): Promise<'added' | 'exists'> {
      if (control.failAdds) throw new Error('Redis is not reachable');
      const existing = jobs.get(data.drvHash);
      if (
        existing &&
        existing.state !== 'completed' &&
        existing.state !== 'failed' &&
        existing.data.attempt === data.attempt
      )
        return 'exists';
      jobs.set(data.drvHash, { state: 'waiting', data });
      added.push(data.drvHash);
      return 'added';
    },
    async job(_queue: string, hash: string) {
      const j = jobs.get(hash);
      return j && asJob(hash, j);
    },
    async state(_queue: string, hash: string) {
      const j = jobs.get(hash);
      return j ? { state: j.state, job: asJob(hash, j) } : { state: 'missing' as const, job: undefined };
    },
  } as unknown as Dispatcher;
  return { dispatcher, jobs, added, control };
}

export const SYSTEM = 'x86_64-linux';
export const QUEUE = 'build-x86_64-linux';
/** A drv hash (32 nix32 characters) named by one letter: `h('a')`. */
export const h = (letter: string) => letter.repeat(32);

/**
 * Repositories on a fresh `:memory:` database with one cache, one project and one evaluation
 * (building), and a build graph over the fake dispatcher whose job payload is the bare record.
 */
export function graphFixture(t: Cleanup) {
  const db = new Sqlite(':memory:');
  t.after(() => db.close());
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
  const project = createProjectsRepo(db).insert(
    'p',
    projectFields({ flake: 'path:/x', ref: null, systems: [SYSTEM], attrs: ['checks'], cache: 'main' }, cache.id),
  );
  const builds = createBuildsRepo(db);
  const evaluations = createEvaluationsRepo(db);
  const evaluation = evaluations.insert({ projectId: project.id, ref: null, flakeUrl: 'path:/x', priority: 0 });
  evaluations.start(evaluation.id);
  evaluations.setEvaluated(evaluation.id);
  const fake = fakeDispatcher();
  const graph = createBuildGraph({
    db,
    builds,
    evaluations,
    dispatcher: fake.dispatcher,
    logger: pino({ level: 'silent' }),
    jobData: (b) =>
      ({
        drvHash: b.drvHash,
        drvPath: `/nix/store/${b.drvPath}`,
        attempt: b.attempt,
        outputs: b.outputs,
      }) as BuildJobData,
  });
  /** Records builds as an evaluation does: `{ c: ['a', 'b'] }` is c needing a and b; inputs first. */
  const record = (deps: Record<string, string[]>) => {
    db.transaction(() => {
      for (const [name, inputs] of Object.entries(deps)) {
        builds.insert({
          drvHash: h(name),
          drvPath: `${h(name)}-${name}.drv`,
          system: SYSTEM,
          requiredFeatures: [],
          outputs: { out: `${h('z')}-${name}` },
          queue: QUEUE,
          cacheId: cache.id,
          priority: 0,
        });
        evaluations.linkBuild(evaluation.id, h(name));
        for (const input of inputs) builds.addDep(h(name), h(input));
      }
    })();
    return Object.keys(deps).map(h);
  };
  const status = (name: string) => builds.get(h(name))?.status;
  return { db, builds, evaluations, evaluation, graph, record, status, ...fake };
}

/** A spoke's result for a job, as BullMQ hands it back. */
export const result = (attempt: number, spoke = 'spoke-1') => ({
  outputs: null,
  spoke,
  startedAt: 1,
  finishedAt: 2,
  logPath: null,
  attempt,
});
