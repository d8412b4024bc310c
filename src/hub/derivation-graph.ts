import { NarhubError } from '../errors.js';
import { isDerivationPath, parseStorePath } from '../nix/store-path.js';

/** One derivation, as far as the hub cares: what it builds, on what, and what it needs first. */
export interface DrvNode {
  /** Full store path of the .drv. */
  drvPath: string;
  /** Hash part of drvPath: the key of the build record. */
  drvHash: string;
  system: string;
  requiredFeatures: string[];
  /** Output name -> full store path (empty for floating content-addressed outputs). */
  outputs: Record<string, string>;
  /** Full paths of the input derivations. */
  inputDrvs: string[];
}

export type DrvGraph = Map<string, DrvNode>;

interface RawDerivation {
  outputs?: Record<string, { path?: string }>;
  inputDrvs?: Record<string, unknown>;
  system?: string;
  platform?: string;
  env?: Record<string, string>;
}

/**
 * `requiredSystemFeatures` from a derivation's environment: a space-separated list, or inside
 * `__json` when the derivation uses structured attributes.
 */
export function requiredFeaturesOf(env: Record<string, string> | undefined): string[] {
  if (!env) return [];
  let value: unknown = env.requiredSystemFeatures;
  if (value === undefined && typeof env.__json === 'string') {
    try {
      value = (JSON.parse(env.__json) as { requiredSystemFeatures?: unknown }).requiredSystemFeatures;
    } catch {
      value = undefined;
    }
  }
  const list = Array.isArray(value)
    ? value.filter((v): v is string => typeof v === 'string')
    : typeof value === 'string'
      ? value.split(/\s+/)
      : [];
  return [...new Set(list.filter((f) => f !== ''))].sort();
}

/** Parses the JSON of `nix show-derivation -r` (Nix 2.8+: `system`; newer: also `platform`). */
export function parseShowDerivation(json: unknown): DrvGraph {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new NarhubError('BAD_REQUEST', 'nix show-derivation printed no JSON object');
  }
  const graph: DrvGraph = new Map();
  for (const [drvPath, raw] of Object.entries(json as Record<string, RawDerivation>)) {
    const parsed = parseStorePath(drvPath);
    if (!isDerivationPath(parsed)) throw new NarhubError('STORE_PATH_INVALID', `${drvPath} is not a derivation`);
    const system = raw.system ?? raw.platform;
    if (typeof system !== 'string') throw new NarhubError('BAD_REQUEST', `derivation ${drvPath} has no system`);
    const outputs: Record<string, string> = {};
    for (const [name, out] of Object.entries(raw.outputs ?? {}))
      if (typeof out?.path === 'string') outputs[name] = out.path;
    graph.set(drvPath, {
      drvPath,
      drvHash: parsed.hashPart,
      system,
      requiredFeatures: requiredFeaturesOf(raw.env),
      outputs,
      inputDrvs: Object.keys(raw.inputDrvs ?? {}).sort(),
    });
  }
  return graph;
}

/** Derivations reachable from `roots` (roots included), dependencies before dependents. */
export function topologicalOrder(graph: DrvGraph, roots: Iterable<string>): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (start: string) => {
    if (state.has(start)) return;
    state.set(start, 'visiting');
    // Iterative, so deep chains cannot overflow the stack.
    const stack: { path: string; next: number }[] = [{ path: start, next: 0 }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const inputs = graph.get(top.path)?.inputDrvs ?? [];
      if (top.next < inputs.length) {
        const input = inputs[top.next++]!;
        const seen = state.get(input);
        if (seen === 'visiting') throw new NarhubError('BAD_REQUEST', `derivation graph has a cycle through ${input}`);
        if (seen === undefined) {
          state.set(input, 'visiting');
          stack.push({ path: input, next: 0 });
        }
        continue;
      }
      state.set(top.path, 'done');
      if (graph.has(top.path)) order.push(top.path);
      stack.pop();
    }
  };
  for (const root of roots) visit(root);
  return order;
}
