/**
 * What a GC run removes, decided over a cache's whole reference graph in memory (pure: no I/O).
 *
 * Every path gets an *effective access time*: the latest access of itself or of any path that
 * refers to it, directly or not; pinned and held paths (and so their whole closures) get
 * +Infinity. A path can only go together with every path that refers to it, and those have an
 * effective time no later than its own, so removing every path whose effective time is at most
 * a threshold always removes a set closed under referrers: a visible narinfo never loses a
 * reference. Retention removes what is older than `now - retention`; the quota then removes
 * the oldest remaining effective times, a whole tie at a time, until the NAR files the rest
 * point at fit.
 *
 * Memory is a few typed arrays per path and edge (about 40 bytes a path plus 8 an edge).
 */

export interface GcGraph {
  /** Per path (index i): last access, ms. */
  accessedAt: Float64Array;
  /** Per path: index of its NAR file (paths may share one), into `narSize`. */
  narIndex: Int32Array;
  /** Per NAR file: its size in bytes. */
  narSize: Float64Array;
  /** References as CSR: path i refers to refs[refStart[i] .. refStart[i+1]). No self-references. */
  refStart: Int32Array;
  refs: Int32Array;
  /** Paths that must stay with their closures: pinned or held by uploads in flight. */
  roots: Iterable<number>;
}

export interface GcPolicy {
  now: number;
  /** ms; undefined: no retention. */
  retentionMs?: number | undefined;
  /** bytes; undefined: no quota. */
  quotaBytes?: number | undefined;
}

export interface GcPlan {
  /** Paths to remove, every referrer before its references. */
  order: Int32Array;
  /** Per path, the effective access time the plan used. */
  effective: Float64Array;
  /** Bytes of NAR files the cache's paths point at, before and after. */
  bytesBefore: number;
  bytesAfter: number;
}

export function planCollection(g: GcGraph, policy: GcPolicy): GcPlan {
  const n = g.accessedAt.length;
  const effective = effectiveAccess(g);
  const remove = new Uint8Array(n);

  const narUsers = new Int32Array(g.narSize.length);
  for (let i = 0; i < n; i++) narUsers[g.narIndex[i]!]!++;
  let bytes = 0;
  for (let k = 0; k < narUsers.length; k++) if (narUsers[k]! > 0) bytes += g.narSize[k]!;
  const bytesBefore = bytes;
  const drop = (i: number) => {
    remove[i] = 1;
    const k = g.narIndex[i]!;
    if (--narUsers[k]! === 0) bytes -= g.narSize[k]!;
  };

  if (policy.retentionMs !== undefined) {
    const cutoff = policy.now - policy.retentionMs;
    for (let i = 0; i < n; i++) if (effective[i]! < cutoff) drop(i);
  }
  if (policy.quotaBytes !== undefined && bytes > policy.quotaBytes) {
    const rest: number[] = [];
    for (let i = 0; i < n; i++) if (remove[i] === 0 && effective[i]! !== Infinity) rest.push(i);
    const byAge = Int32Array.from(rest).sort((a, b) => effective[a]! - effective[b]!);
    let j = 0;
    while (j < byAge.length && bytes > policy.quotaBytes) {
      const t = effective[byAge[j]!]!;
      while (j < byAge.length && effective[byAge[j]!] === t) drop(byAge[j++]!);
    }
  }
  return { order: referrersFirst(g, remove), effective, bytesBefore, bytesAfter: bytes };
}

/**
 * Latest access of each path or of anything that refers to it: roots first (+Infinity), then
 * paths by descending access time, each marking the part of its closure not yet marked, which
 * the first (latest) visitor owns. O(paths + edges).
 */
function effectiveAccess(g: GcGraph): Float64Array {
  const n = g.accessedAt.length;
  const effective = new Float64Array(n).fill(Number.NEGATIVE_INFINITY);
  const seen = new Uint8Array(n);
  const stack = new Int32Array(n);
  const mark = (start: number, time: number) => {
    if (seen[start]) return;
    let top = 0;
    stack[top++] = start;
    seen[start] = 1;
    while (top > 0) {
      const i = stack[--top]!;
      effective[i] = time;
      for (let e = g.refStart[i]!; e < g.refStart[i + 1]!; e++) {
        const r = g.refs[e]!;
        if (!seen[r]) {
          seen[r] = 1;
          stack[top++] = r;
        }
      }
    }
  };
  for (const r of g.roots) mark(r, Number.POSITIVE_INFINITY);
  const byRecency = new Int32Array(n);
  for (let i = 0; i < n; i++) byRecency[i] = i;
  byRecency.sort((a, b) => g.accessedAt[b]! - g.accessedAt[a]!);
  for (const i of byRecency) mark(i, g.accessedAt[i]!);
  return effective;
}

/** The paths marked in `remove`, ordered so that each comes after every path referring to it. */
function referrersFirst(g: GcGraph, remove: Uint8Array): Int32Array {
  const n = remove.length;
  const referrers = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    if (!remove[i]) continue;
    for (let e = g.refStart[i]!; e < g.refStart[i + 1]!; e++) if (remove[g.refs[e]!]) referrers[g.refs[e]!]!++;
  }
  const order: number[] = [];
  for (let i = 0; i < n; i++) if (remove[i] && referrers[i] === 0) order.push(i);
  // Kahn's algorithm; a reference cycle (impossible for store paths) would simply stay.
  for (let head = 0; head < order.length; head++) {
    const i = order[head]!;
    for (let e = g.refStart[i]!; e < g.refStart[i + 1]!; e++) {
      const r = g.refs[e]!;
      if (remove[r] && --referrers[r]! === 0) order.push(r);
    }
  }
  return Int32Array.from(order);
}
