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
  /** True when this output path (full) is a valid path of the target cache. */
  inCache(outputPath: string): boolean;
  existing(drvHash: string): KnownBuild | undefined;
}

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
 */
export function plan(input: PlanInput): Plan {
  const { graph } = input;
  const needed = new Set<string>();
  const cached = new Set<string>();
  const seen = new Set<string>();
  const stack = [...input.roots];
  while (stack.length > 0) {
    const path = stack.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const node = graph.get(path);
    if (!node) throw new NarhubError('BAD_REQUEST', `derivation ${path} is missing from the derivation graph`);
    const outputs = Object.values(node.outputs);
    const allCached =
      outputs.length > 0
        ? outputs.every((o) => input.inCache(o))
        : input.existing(node.drvHash)?.status === 'succeeded';
    if (allCached) {
      cached.add(path);
      continue;
    }
    needed.add(path);
    for (const dep of node.inputDrvs) stack.push(dep);
  }
  const builds: PlannedBuild[] = [];
  // Builds that stay failed: a deterministic failure, and what only failed because of one.
  const staysFailed = new Set<string>();
  for (const path of topologicalOrder(graph, needed)) {
    if (!needed.has(path)) continue;
    const node = graph.get(path)!;
    const known = input.existing(node.drvHash);
    const inputs = node.inputDrvs.filter((d) => needed.has(d)).map((d) => graph.get(d)!.drvHash);
    let action = actionFor(known);
    if (known?.status === 'failed' && action === 'keep') staysFailed.add(node.drvHash);
    if (known?.status === 'dependency-failed' && inputs.some((h) => staysFailed.has(h))) {
      action = 'keep';
      staysFailed.add(node.drvHash);
    }
    builds.push({ node, action, inputs });
  }
  return { builds, cached };
}
