// The GC plan over small graphs: effective access times, retention, quota, roots, and the order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type GcGraph, planCollection } from '../../../src/cache/gc-plan.js';

/** A graph from per-path access times, per-path NAR sizes (one NAR each) and `[from, to]` references. */
function graph(accessed: number[], edges: [number, number][], roots: number[] = [], sizes?: number[]): GcGraph {
  const n = accessed.length;
  const refStart = new Int32Array(n + 1);
  for (const [a] of edges) refStart[a + 1]!++;
  for (let i = 0; i < n; i++) refStart[i + 1]! += refStart[i]!;
  const fill = refStart.slice(0, n);
  const refs = new Int32Array(edges.length);
  for (const [a, b] of edges) refs[fill[a]!++] = b;
  return {
    accessedAt: Float64Array.from(accessed),
    narIndex: Int32Array.from(accessed.map((_, i) => i)),
    narSize: Float64Array.from(sizes ?? accessed.map(() => 100)),
    refStart,
    refs,
    roots,
  };
}

const removed = (g: GcGraph, policy: Parameters<typeof planCollection>[1]) =>
  [...planCollection(g, policy).order].sort((a, b) => a - b);

test('retention keeps an old path that a recently accessed path refers to, directly or not', () => {
  // 0 <- 1 <- 2 (2 refers to 1, 1 to 0); only 2 was accessed lately; 3 is old and alone.
  const g = graph(
    [0, 0, 1000, 0],
    [
      [2, 1],
      [1, 0],
    ],
  );
  assert.deepEqual(removed(g, { now: 1000, retentionMs: 500 }), [3]);
  assert.deepEqual(removed(g, { now: 2000, retentionMs: 500 }), [0, 1, 2, 3]);
});

test('a pinned (or held) root keeps its whole closure whatever its age', () => {
  const g = graph(
    [0, 0, 0, 0],
    [
      [2, 1],
      [1, 0],
    ],
    [1],
  );
  assert.deepEqual(removed(g, { now: 1e9, retentionMs: 1, quotaBytes: 0 }), [2, 3]);
});

test('no policy removes nothing', () => {
  assert.deepEqual(removed(graph([0, 0], [[1, 0]]), { now: 1e12 }), []);
});

test('the quota removes the least recently accessed first, a referrer no later than its references', () => {
  // 0 (t=10) is referred to by 1 (t=5): effectively 10 for both... no: 1 refers to 0, so 0 lives while 1 does.
  // 2 (t=20), 3 (t=30). Sizes 100 each; quota 200 keeps the two most recent effective times.
  const g = graph([10, 5, 20, 30], [[1, 0]]);
  // effective: 0 -> max(10, 5) = 10, 1 -> 5, 2 -> 20, 3 -> 30: removes 1 then 0.
  assert.deepEqual(removed(g, { now: 100, quotaBytes: 200 }), [0, 1]);
  assert.deepEqual(removed(g, { now: 100, quotaBytes: 300 }), [1]);
  const plan = planCollection(g, { now: 100, quotaBytes: 300 });
  assert.equal(plan.bytesBefore, 400);
  assert.equal(plan.bytesAfter, 300);
});

test('property: the removed set is closed under referrers, ordered referrers first, and fits the quota', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }).chain((n) =>
        fc.record({
          accessed: fc.array(fc.integer({ min: 0, max: 50 }), { minLength: n, maxLength: n }),
          // Edges from a higher index to a lower one: a DAG, as store paths are.
          edges: fc.array(
            fc
              .tuple(fc.integer({ min: 0, max: n - 1 }), fc.integer({ min: 0, max: n - 1 }))
              .map(([a, b]): [number, number] => [Math.max(a, b), Math.min(a, b)]),
            { maxLength: 3 * n },
          ),
          roots: fc.array(fc.integer({ min: 0, max: n - 1 }), { maxLength: 3 }),
          retention: fc.option(fc.integer({ min: 1, max: 60 }), { nil: undefined }),
          quota: fc.option(fc.integer({ min: 0, max: 100 * n }), { nil: undefined }),
        }),
      ),
      ({ accessed, edges, roots, retention, quota }) => {
        const unique = [...new Map(edges.filter(([a, b]) => a !== b).map((e) => [`${e[0]},${e[1]}`, e])).values()];
        const g = graph(accessed, unique, roots);
        const plan = planCollection(g, { now: 60, retentionMs: retention, quotaBytes: quota });
        const gone = new Set(plan.order);
        const position = new Map([...plan.order].map((p, i) => [p, i]));
        for (const [from, to] of unique) {
          // A removed path's referrers are removed too, and before it.
          if (gone.has(to)) {
            assert.ok(gone.has(from), `${to} removed but its referrer ${from} kept`);
            assert.ok(position.get(from)! < position.get(to)!);
          }
        }
        // Roots and everything they reach stay.
        const reach = new Set<number>();
        const stack = [...roots];
        while (stack.length > 0) {
          const i = stack.pop()!;
          if (reach.has(i)) continue;
          reach.add(i);
          for (const [a, b] of unique) if (a === i) stack.push(b);
        }
        for (const i of reach) assert.ok(!gone.has(i), `${i} is in a pinned closure`);
        // Nothing accessed within the retention goes unless the quota needs it.
        if (quota === undefined && retention !== undefined)
          for (const i of gone) assert.ok(accessed[i]! < 60 - retention);
        if (quota !== undefined) {
          const rootBytes = reach.size * 100;
          assert.ok(plan.bytesAfter <= Math.max(quota, rootBytes), `${plan.bytesAfter} over quota ${quota}`);
        }
        assert.equal(plan.bytesAfter, (accessed.length - gone.size) * 100);
      },
    ),
    { numRuns: 500 },
  );
});
