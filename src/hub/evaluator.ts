import { NarhubError } from '../errors.js';
import type { ProjectAttrSet } from '../db/projects-repo.js';
import { mapLimit } from '../io/map-limit.js';
import { isDerivationPath, parseStorePath } from '../nix/store-path.js';
import { parseShowDerivation, type DrvGraph } from './derivation-graph.js';
import { nixError, runNix } from './nix-runner.js';

/** How every Nix command of one evaluation runs: one deadline for all of them, one memory limit each. */
export interface EvalLimits {
  deadline: number;
  memoryMb: number;
  env?: NodeJS.ProcessEnv | undefined;
  signal?: AbortSignal | undefined;
}

/** One attribute of the evaluation: its .drv, or why it has none. */
export interface EvaluatedAttr {
  attr: string;
  /** The system asked for (checks, packages); for NixOS configurations, known once the .drv is read. */
  system: string | null;
  drvPath: string | null;
  error: string | null;
}

const NIX_FLAGS = [
  '--extra-experimental-features',
  'nix-command flakes',
  '--no-write-lock-file',
  '--option',
  'warn-dirty',
  'false',
];

/** `name` as one component of a Nix attribute path, quoted when it is not a plain identifier. */
function attrComponent(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_'-]*$/.test(name) ? name : JSON.stringify(name);
}

export function attrPath(components: readonly string[]): string {
  return components.map(attrComponent).join('.');
}

/** The flake reference to evaluate: the project's flake at `ref` (a branch, tag or 40-hex revision). */
export function flakeRefAt(flake: string, ref: string | null, rev: string | null = null): string {
  if (rev !== null) return withParams(flakeRefAt(flake, ref), { rev });
  if (ref === null || ref === '') return flake;
  if (/^path:/.test(flake) || flake.startsWith('/')) {
    throw new NarhubError('BAD_REQUEST', `${flake} is a path: flake; it has no branches or refs`);
  }
  const key = /^[0-9a-f]{40}$/.test(ref) ? 'rev' : 'ref';
  return withParams(flake, { ref: undefined, rev: undefined, [key]: ref });
}

/** The flake URL (fragment dropped) with query parameters set (undefined: removed). */
function withParams(flake: string, set: Record<string, string | undefined>): string {
  const hashAt = flake.indexOf('#');
  const base = hashAt >= 0 ? flake.slice(0, hashAt) : flake;
  const [path, query = ''] = base.split('?', 2) as [string, string?];
  const params = new URLSearchParams(query);
  for (const [k, v] of Object.entries(set)) {
    params.delete(k);
    if (v !== undefined) params.set(k, v);
  }
  return `${path}?${params.toString()}`;
}

/** Locks the flake reference: the URL later commands evaluate, and the revision when there is one. */
export async function lockFlake(
  flakeRef: string,
  limits: EvalLimits,
): Promise<{ lockedUrl: string; revision: string | null }> {
  const res = await runNix(['flake', 'metadata', '--json', ...NIX_FLAGS, flakeRef], limits);
  if (res.code !== 0) throw new NarhubError('BAD_REQUEST', `cannot lock ${flakeRef}: ${nixError(res.stderr)}`);
  let meta: { url?: unknown; revision?: unknown; locked?: { rev?: unknown } };
  try {
    meta = JSON.parse(res.stdout) as typeof meta;
  } catch {
    throw new NarhubError('BAD_REQUEST', `nix flake metadata printed no JSON for ${flakeRef}`);
  }
  if (typeof meta.url !== 'string')
    throw new NarhubError('BAD_REQUEST', `nix flake metadata gave no locked URL for ${flakeRef}`);
  const revision =
    typeof meta.revision === 'string' ? meta.revision : typeof meta.locked?.rev === 'string' ? meta.locked.rev : null;
  return { lockedUrl: meta.url, revision };
}

interface Category {
  /** Attribute path of the set whose members are jobs. */
  set: string[];
  /** Path inside each member to the derivation. */
  inner: string[];
  system: string | null;
}

function categories(attrs: readonly ProjectAttrSet[], systems: readonly string[]): Category[] {
  const out: Category[] = [];
  for (const a of attrs) {
    if (a === 'nixosConfigurations')
      out.push({ set: ['nixosConfigurations'], inner: ['config', 'system', 'build', 'toplevel'], system: null });
    else for (const system of systems) out.push({ set: [a, system], inner: [], system });
  }
  return out;
}

async function evalJson(
  installable: string,
  apply: string | undefined,
  limits: EvalLimits,
): Promise<{ ok: true; value: unknown } | { ok: false; error: string }> {
  const args = ['eval', '--json', ...NIX_FLAGS, installable];
  if (apply !== undefined) args.push('--apply', apply);
  const res = await runNix(args, limits);
  if (res.code !== 0) return { ok: false, error: nixError(res.stderr) };
  try {
    return { ok: true, value: JSON.parse(res.stdout) as unknown };
  } catch {
    return { ok: false, error: 'nix eval printed no JSON' };
  }
}

/** Whether `nix eval` printed the path of a derivation: a store path (nix/store-path.ts) ending in `.drv`. */
function isDrvPath(v: unknown): v is string {
  if (typeof v !== 'string') return false;
  try {
    return isDerivationPath(parseStorePath(v));
  } catch {
    return false;
  }
}

/**
 * Finds the jobs of a locked flake: the attribute names of each set first, then every member's
 * drvPath in one `nix eval` per set. Members that fail there (an error `tryEval` cannot catch
 * sinks the whole batch) are evaluated one by one, so a broken attribute is recorded with its
 * own error and never takes the others down.
 */
export async function evaluateJobs(
  lockedUrl: string,
  attrs: readonly ProjectAttrSet[],
  systems: readonly string[],
  limits: EvalLimits,
): Promise<EvaluatedAttr[]> {
  const jobs: EvaluatedAttr[] = [];
  for (const cat of categories(attrs, systems)) {
    const setPath = attrPath(cat.set);
    const names = await evalJson(`${lockedUrl}#${setPath}`, 'builtins.attrNames', limits);
    if (!names.ok) {
      // A flake that simply has no such output (no packages, no configurations) has no jobs there.
      if (/does not provide attribute/.test(names.error)) continue;
      jobs.push({ attr: setPath, system: cat.system, drvPath: null, error: names.error });
      continue;
    }
    const members = (names.value as unknown[]).filter((n): n is string => typeof n === 'string');
    if (members.length === 0) continue;
    const inner = cat.inner.map((c) => `.${attrComponent(c)}`).join('');
    const apply =
      `set: builtins.mapAttrs (n: v: let r = builtins.tryEval (v${inner}.drvPath or null); ` +
      'in if r.success then r.value else null) set';
    const batch = await evalJson(`${lockedUrl}#${setPath}`, apply, limits);
    const found =
      batch.ok && batch.value !== null && typeof batch.value === 'object'
        ? (batch.value as Record<string, unknown>)
        : {};
    const one = async (name: string): Promise<EvaluatedAttr> => {
      const attr = attrPath([...cat.set, name, ...cat.inner]);
      const drv = found[name];
      if (isDrvPath(drv)) return { attr, system: cat.system, drvPath: drv, error: null };
      const single = await evalJson(`${lockedUrl}#${attr}`, 'v: v.drvPath or null', limits);
      if (!single.ok) return { attr, system: cat.system, drvPath: null, error: single.error };
      if (isDrvPath(single.value)) return { attr, system: cat.system, drvPath: single.value, error: null };
      return { attr, system: cat.system, drvPath: null, error: `${attr} is not a derivation` };
    };
    jobs.push(...(await mapLimit(members, 4, one)));
  }
  return jobs;
}

/**
 * The derivation graph below `drvPaths` (`nix show-derivation -r`), in batches. A root whose
 * batch fails is retried alone; the roots that still fail are returned with their errors.
 */
export async function showDerivations(
  drvPaths: readonly string[],
  limits: EvalLimits,
): Promise<{ graph: DrvGraph; errors: Map<string, string> }> {
  const graph: DrvGraph = new Map();
  const errors = new Map<string, string>();
  const run = async (paths: readonly string[]): Promise<string | undefined> => {
    const res = await runNix(['show-derivation', '-r', ...NIX_FLAGS.slice(0, 2), ...paths], limits);
    if (res.code !== 0) return nixError(res.stderr);
    let parsed: DrvGraph;
    try {
      parsed = parseShowDerivation(JSON.parse(res.stdout));
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
    for (const [k, v] of parsed) graph.set(k, v);
    return undefined;
  };
  const unique = [...new Set(drvPaths)];
  for (let i = 0; i < unique.length; i += 200) {
    const chunk = unique.slice(i, i + 200).filter((p) => !graph.has(p));
    if (chunk.length === 0) continue;
    const error = await run(chunk);
    if (error === undefined) continue;
    for (const p of chunk) {
      const single = await run([p]);
      if (single !== undefined) errors.set(p, single);
    }
  }
  return { graph, errors };
}
