import { NarhubError } from '../errors.js';
import type { BuildStatus, FailureKind } from '../db/builds-repo.js';
import { topologicalOrder, type DrvGraph, type DrvNode } from './derivation-graph.js';

/** What the planner needs to know about an existing build record. */
export interface KnownBuild {
  status: BuildStatus;
  failureKind: FailureKind | null;
}

/**
 * What happens to the build record of a derivation that must be built:
 * - `create`: no record yet;
 * - `retry`: a new attempt (its outputs left the cache, or it failed for a reason that is not the
 *   build's own: timeout, infrastructure, cancellation);
 * - `reset`: back to queued without counting an attempt (it only failed because an input did,
 *   and that input gets another try);
 * - `keep`: already queued or running, or failed deterministically (not retried until restarted),
 *   or dependency-failed on an input that stays failed.
 */
export type PlanAction = 'create' | 'retry' | 'reset' | 'keep';

export interface PlannedBuild {
  node: DrvNode;
  action: PlanAction;
  /** drvHashes of the inputs that must be built first (inputs whose outputs are cached are left out). */
  inputs: string[];
  /** Its build record as the plan found it (none: `create`). */
  known: KnownBuild | undefined;
}

export interface Plan {
  /** Derivations to build, dependencies before dependents. */
  builds: PlannedBuild[];
  /** Derivations not built because every output is already valid in the cache. */
  cached: Set<string>;
}

export interface PlanInput {
  graph: DrvGraph;
  /** The .drv paths of the evaluation's jobs. */
  roots: Iterable<string>;
  /** Of these output paths (full), the ones that are valid paths of the target cache: one query. */
  inCache(outputPaths: readonly string[]): Set<string>;
  /** The build records of these derivations that exist: one query. */
  existing(drvHashes: readonly string[]): Map<string, KnownBuild>;
}

/** Derivations looked up at once, and planned between two turns of the event loop. */
export const PLAN_BATCH = 2_000;

/** Lets the event loop run (requests, BullMQ events) between two batches of synchronous work. */
export const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function actionFor(known: KnownBuild | undefined): PlanAction {
  if (!known) return 'create';
  switch (known.status) {
    case 'queued':
    case 'running':
      return 'keep';
    case 'failed':
      return known.failureKind === 'build' ? 'keep' : 'retry';
    case 'dependency-failed':
      return 'reset';
    case 'succeeded':
    case 'cancelled':
      return 'retry';
  }
}

/**
 * Walks the derivation graph down from the roots and keeps what must be built: a derivation
 * whose outputs are all valid in the cache is dropped with everything only it needed, whatever
 * the build records say (the cache is the truth; records go stale when paths leave it).
 *
 * The walk goes a level at a time, PLAN_BATCH derivations per query to the cache and to the
 * build records (not one per path), and yields to the event loop between batches, so a plan of
 * 100,000 derivations never holds the loop for long.
 */
export async function plan(input: PlanInput): Promise<Plan> {
  const { graph } = input;
  const needed = new Set<string>();
  const cached = new Set<string>();
  const seen = new Set<string>();
  const nodeOf = (path: string): DrvNode => {
    const node = graph.get(path);
    if (!node) throw new NarhubError('BAD_REQUEST', `derivation ${path} is missing from the derivation graph`);
    return node;
  };
  let level = [...new Set(input.roots)];
  for (const r of level) seen.add(r);
  while (level.length > 0) {
    const next: string[] = [];
    for (let i = 0; i < level.length; i += PLAN_BATCH) {
      const nodes = level.slice(i, i + PLAN_BATCH).map(nodeOf);
      const present = input.inCache(nodes.flatMap((n) => Object.values(n.outputs)));
      // Floating content-addressed outputs have no path: their record says whether they were built.
      const outputless = nodes.filter((n) => Object.keys(n.outputs).length === 0).map((n) => n.drvHash);
      const records = outputless.length > 0 ? input.existing(outputless) : new Map<string, KnownBuild>();
      for (const node of nodes) {
        const outputs = Object.values(node.outputs);
        const allCached =
          outputs.length > 0 ? outputs.every((o) => present.has(o)) : records.get(node.drvHash)?.status === 'succeeded';
        if (allCached) {
          cached.add(node.drvPath);
          continue;
        }
        needed.add(node.drvPath);
        for (const dep of node.inputDrvs) {
          if (seen.has(dep)) continue;
          seen.add(dep);
          next.push(dep);
        }
      }
      await yieldToLoop();
    }
    level = next;
  }
  const order = topologicalOrder(graph, needed).filter((path) => needed.has(path));
  await yieldToLoop();
  const builds: PlannedBuild[] = [];
  // Builds that stay failed: a deterministic failure, and what only failed because of one.
  const staysFailed = new Set<string>();
  for (let i = 0; i < order.length; i += PLAN_BATCH) {
    const nodes = order.slice(i, i + PLAN_BATCH).map((path) => graph.get(path)!);
    const records = input.existing(nodes.map((n) => n.drvHash));
    for (const node of nodes) {
      const known = records.get(node.drvHash);
      const inputs = node.inputDrvs.filter((d) => needed.has(d)).map((d) => graph.get(d)!.drvHash);
      let action = actionFor(known);
      if (known?.status === 'failed' && action === 'keep') staysFailed.add(node.drvHash);
      if (known?.status === 'dependency-failed' && inputs.some((h) => staysFailed.has(h))) {
        action = 'keep';
        staysFailed.add(node.drvHash);
      }
      builds.push({ node, action, inputs, known });
    }
    await yieldToLoop();
  }
  return { builds, cached };
}
