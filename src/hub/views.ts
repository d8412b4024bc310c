import type { BuildRow, BuildsRepo } from '../db/builds-repo.js';
import type { EvalJobRow, EvaluationRow } from '../db/evaluations-repo.js';
import type { ProjectRow } from '../db/projects-repo.js';
import { parseQueueName, spokeCanServe, type SpokeHeartbeat } from '../protocol/build-jobs.js';
import { compatible, waitingReason } from './spokes.js';

/** The JSON shapes of the hub API (and of the CLI's --json output). Times are ISO strings. */
const STORE = '/nix/store/';
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
const full = (base: string | null): string | null => (base === null ? null : STORE + base);
const fullMap = (m: Record<string, string> | null): Record<string, string> =>
  Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, v.startsWith('/') ? v : STORE + v]));

export interface ProjectView {
  name: string;
  flake: string;
  ref: string | null;
  systems: string[];
  attrs: string[];
  cache: string;
  priority: number;
  /** OWNER/REPO on the configured forge, or null. */
  github: string | null;
  forkPolicy: string;
  forkUsers: string[];
  pollInterval: number | null;
  notifyUrl: string | null;
  /** Whether the outgoing webhook has its HMAC key yet. */
  notifySecretSet: boolean;
  createdAt: string;
  updatedAt: string;
}

export function projectView(p: ProjectRow): ProjectView {
  return {
    name: p.name,
    flake: p.flake,
    ref: p.ref,
    systems: p.systems,
    attrs: p.attrs,
    cache: p.cacheName,
    priority: p.priority,
    github: p.forgeRepo,
    forkPolicy: p.forkPolicy,
    forkUsers: p.forkUsers,
    pollInterval: p.pollInterval,
    notifyUrl: p.notifyUrl,
    notifySecretSet: p.notifySecretFile !== null,
    createdAt: iso(p.createdAt)!,
    updatedAt: iso(p.updatedAt)!,
  };
}

export interface BuildView {
  drvHash: string;
  drvPath: string;
  system: string;
  requiredFeatures: string[];
  outputs: Record<string, string>;
  status: string;
  /** For a queued build: why it is not running yet. */
  waitingFor: string | null;
  attempt: number;
  spoke: string | null;
  failureKind: string | null;
  error: string | null;
  failedDependency: string | null;
  logPath: string | null;
  progress: unknown;
  queue: string;
  cache: string;
  priority: number;
  createdAt: string;
  enqueuedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

function buildView(
  b: BuildRow,
  extra: { waitingFor: string | null; spoke?: string | null; failedDependencyPath?: string | null },
): BuildView {
  return {
    drvHash: b.drvHash,
    drvPath: STORE + b.drvPath,
    system: b.system,
    requiredFeatures: b.requiredFeatures,
    outputs: fullMap(b.outputs),
    status: b.status,
    waitingFor: extra.waitingFor,
    attempt: b.attempt,
    spoke: b.spoke ?? extra.spoke ?? null,
    failureKind: b.failureKind,
    error: b.error,
    failedDependency: extra.failedDependencyPath ?? null,
    logPath: b.logPath,
    progress: b.progress,
    queue: b.queue,
    cache: b.cacheName,
    priority: b.priority,
    createdAt: iso(b.createdAt)!,
    enqueuedAt: iso(b.enqueuedAt),
    startedAt: iso(b.startedAt),
    finishedAt: iso(b.finishedAt),
  };
}

/**
 * Build views with what only the moment knows: why a queued build waits (its inputs, or which
 * spokes are connected) and which spoke runs it. `spokes` is read once per answer, and only
 * when a view needs it.
 */
export function createBuildViews(deps: { builds: BuildsRepo; spokes(): Promise<SpokeHeartbeat[]> }) {
  const { builds } = deps;
  return async function viewOf(b: BuildRow, spokes?: SpokeHeartbeat[]): Promise<BuildView> {
    let waitingFor: string | null = null;
    let spoke: string | null = null;
    if (b.status === 'queued') {
      if (!b.enqueued) {
        const open = builds.deps(b.drvHash).filter((d) => d.status !== 'succeeded');
        waitingFor =
          open.length > 0
            ? `waiting for ${open.length} input build${open.length === 1 ? '' : 's'}`
            : 'about to be queued';
      } else {
        waitingFor = waitingReason(spokes ?? (await deps.spokes()), b.system, b.requiredFeatures);
      }
    } else if (b.status === 'running' && !b.spoke) {
      spoke = (spokes ?? (await deps.spokes())).find((s) => s.running?.includes(b.drvHash))?.id ?? null;
    }
    const failed = b.failedDep ? builds.get(b.failedDep) : undefined;
    return buildView(b, { waitingFor, spoke, failedDependencyPath: failed ? STORE + failed.drvPath : null });
  };
}

export interface QueueView {
  name: string;
  system: string;
  requiredFeatures: string[];
  waiting: number;
  active: number;
  delayed: number;
  /** Ids of connected spokes that can take its jobs. */
  spokes: string[];
}

export function queueView(
  name: string,
  depth: { waiting: number; active: number; delayed: number } | undefined,
  spokes: readonly SpokeHeartbeat[],
): QueueView {
  const parsed = parseQueueName(name) ?? { system: name, requiredFeatures: [] };
  const c = depth ?? { waiting: 0, active: 0, delayed: 0 };
  return {
    name,
    system: parsed.system,
    requiredFeatures: parsed.requiredFeatures,
    waiting: c.waiting,
    active: c.active,
    delayed: c.delayed,
    spokes: spokes
      .filter((s) => compatible(s) && spokeCanServe(s, parsed.system, parsed.requiredFeatures))
      .map((s) => s.id),
  };
}

export interface SpokeView extends SpokeHeartbeat {
  compatible: boolean;
}

export function spokeView(s: SpokeHeartbeat): SpokeView {
  return { ...s, compatible: compatible(s) };
}

export interface JobView {
  attr: string;
  system: string | null;
  drvPath: string | null;
  drvHash: string | null;
  /** eval-failed | cached (outputs already in the cache) | a build status. */
  status: string;
  outputs: Record<string, string>;
  error: string | null;
  waitingFor: string | null;
  /** The build's attempt, spoke and times (null when the outputs were already in the cache). */
  attempt: number | null;
  spoke: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  failureKind: string | null;
  /** For dependency-failed: the input derivation whose build failed. */
  failedDependency: string | null;
  /** The failure was already recorded before this evaluation (the failure cache), not built again. */
  fromFailureCache: boolean;
}

export function jobView(
  j: EvalJobRow,
  build: BuildView | undefined,
  linked: boolean,
  evaluationCreatedAt = 0,
): JobView {
  let status: string;
  if (j.error !== null || j.drvHash === null) status = 'eval-failed';
  else if (build && linked) status = build.status;
  else status = 'cached';
  return {
    attr: j.attr,
    system: j.system,
    drvPath: full(j.drvPath),
    drvHash: j.drvHash,
    status,
    outputs: build && Object.keys(build.outputs).length > 0 ? build.outputs : fullMap(j.outputs),
    error: j.error ?? (linked ? (build?.error ?? null) : null),
    waitingFor: linked ? (build?.waitingFor ?? null) : null,
    ...buildFacts(linked ? build : undefined, evaluationCreatedAt),
  };
}

function buildFacts(b: BuildView | undefined, evaluationCreatedAt: number) {
  if (!b)
    return {
      attempt: null,
      spoke: null,
      startedAt: null,
      finishedAt: null,
      durationMs: null,
      failureKind: null,
      failedDependency: null,
      fromFailureCache: false,
    };
  const started = b.startedAt === null ? null : Date.parse(b.startedAt);
  const finished = b.finishedAt === null ? null : Date.parse(b.finishedAt);
  const failed = b.status === 'failed' || b.status === 'dependency-failed';
  return {
    attempt: b.attempt,
    spoke: b.spoke,
    startedAt: b.startedAt,
    finishedAt: b.finishedAt,
    durationMs: started !== null && finished !== null ? finished - started : null,
    failureKind: b.failureKind,
    failedDependency: b.failedDependency,
    fromFailureCache: failed && finished !== null && finished < evaluationCreatedAt,
  };
}

export interface EvaluationView {
  id: number;
  project: string;
  ref: string | null;
  flakeUrl: string;
  lockedUrl: string | null;
  revision: string | null;
  status: string;
  priority: number;
  error: string | null;
  supersededBy: number | null;
  /** A branch, pr-N, or null for a bare commit. */
  jobset: string | null;
  /** The commit asked for, else the revision the flake locked to. */
  commit: string | null;
  trigger: string;
  prNumber: number | null;
  triggeredBy: string | null;
  createdAt: string;
  startedAt: string | null;
  evaluatedAt: string | null;
  finishedAt: string | null;
  /** Builds this evaluation needs, by status. */
  builds: Record<string, number>;
  jobs?: JobView[];
}

export function evaluationView(
  e: EvaluationRow,
  project: string,
  builds: Record<string, number>,
  jobs?: JobView[],
): EvaluationView {
  return {
    id: e.id,
    project,
    ref: e.ref,
    flakeUrl: e.flakeUrl,
    lockedUrl: e.lockedUrl,
    revision: e.revision,
    status: e.status,
    priority: e.priority,
    error: e.error,
    supersededBy: e.supersededBy,
    jobset: e.jobset,
    commit: e.commitSha ?? e.revision,
    trigger: e.trigger,
    prNumber: e.prNumber,
    triggeredBy: e.triggeredBy,
    createdAt: iso(e.createdAt)!,
    startedAt: iso(e.startedAt),
    evaluatedAt: iso(e.evaluatedAt),
    finishedAt: iso(e.finishedAt),
    builds,
    ...(jobs ? { jobs } : {}),
  };
}
