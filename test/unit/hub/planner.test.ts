import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseShowDerivation, type DrvGraph, type DrvNode } from '../../../src/hub/derivation-graph.js';
import { encodeNix32 } from '../../../src/nix/nix32.js';
import { PLAN_BATCH, plan, type KnownBuild } from '../../../src/hub/planner.js';

const fixtures = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../test/fixtures/hub');
const graph = parseShowDerivation(JSON.parse(readFileSync(join(fixtures, 'show-derivation-r.json'), 'utf8')));
const roots = Object.values(
  JSON.parse(readFileSync(join(fixtures, 'check-drvs.json'), 'utf8')) as Record<string, string>,
);
const node = (name: string) => [...graph.values()].find((n) => n.drvPath.endsWith(`-${name}.drv`))!;
const names = (p: Awaited<ReturnType<typeof plan>>) =>
  p.builds.map((b) => b.node.drvPath.replace(/^.*?-(hub-.*)\.drv$/, '$1'));

function planWith(opts: { cached?: string[]; known?: Record<string, KnownBuild>; roots?: string[] } = {}) {
  const cachedOutputs = new Set((opts.cached ?? []).flatMap((n) => Object.values(node(n).outputs)));
  const known = new Map(Object.entries(opts.known ?? {}).map(([n, k]) => [node(n).drvHash, k]));
  return plan({
    graph,
    roots: opts.roots ?? roots,
    inCache: (outs) => new Set(outs.filter((o) => cachedOutputs.has(o))),
    existing: (hashes) => new Map(hashes.flatMap((h) => (known.has(h) ? [[h, known.get(h)!] as const] : []))),
  });
}

test('with an empty cache every derivation is built, inputs first, with its build edges', async () => {
  const p = await planWith();
  assert.equal(p.builds.length, 10);
  assert.equal(p.cached.size, 0);
  const order = names(p);
  assert.ok(order.indexOf('hub-shared') < order.indexOf('hub-shared-a'));
  assert.ok(order.indexOf('hub-chain-2') < order.indexOf('hub-chain-3'));
  const sharedA = p.builds.find((b) => b.node.drvHash === node('hub-shared-a').drvHash)!;
  assert.deepEqual(sharedA.inputs, [node('hub-shared').drvHash]);
  assert.ok(p.builds.every((b) => b.action === 'create'));
});

test('a derivation whose outputs are in the cache is dropped, and with it what only it needed', async () => {
  const p = await planWith({ cached: ['hub-shared', 'hub-chain-3'] });
  const order = names(p);
  for (const gone of ['hub-shared', 'hub-chain-3', 'hub-chain-2', 'hub-chain-1'])
    assert.ok(!order.includes(gone), `${gone} is not built`);
  assert.ok(order.includes('hub-slow') && order.includes('hub-shared-a'));
  // Inputs whose outputs are cached are no build edges.
  assert.deepEqual(p.builds.find((b) => b.node.drvHash === node('hub-shared-a').drvHash)!.inputs, []);
  assert.deepEqual(p.builds.find((b) => b.node.drvHash === node('hub-slow').drvHash)!.inputs, []);
  assert.equal(p.cached.size, 2);
});

test('everything cached: nothing to build', async () => {
  const all = [...graph.values()].map((n) => n.drvPath.replace(/^.*?-(hub-.*)\.drv$/, '$1'));
  const p = await planWith({ cached: all });
  assert.equal(p.builds.length, 0);
  assert.equal(p.cached.size, roots.length);
});

test('existing records decide between create, retry, reset and keep', async () => {
  const p = await planWith({
    known: {
      'hub-fails': { status: 'failed', failureKind: 'build' },
      'hub-chain-1': { status: 'failed', failureKind: 'infrastructure' },
      'hub-chain-2': { status: 'failed', failureKind: 'timeout' },
      'hub-after-fail': { status: 'dependency-failed', failureKind: null },
      'hub-shared': { status: 'succeeded', failureKind: null },
      'hub-shared-a': { status: 'running', failureKind: null },
      'hub-shared-b': { status: 'queued', failureKind: null },
      'hub-slow': { status: 'cancelled', failureKind: 'cancelled' },
    },
  });
  const action = (n: string) => p.builds.find((b) => b.node.drvHash === node(n).drvHash)?.action;
  assert.equal(action('hub-fails'), 'keep', 'a deterministic failure is not retried');
  assert.equal(action('hub-chain-1'), 'retry', 'infrastructure failures do not count');
  assert.equal(action('hub-chain-2'), 'retry');
  assert.equal(action('hub-after-fail'), 'keep', 'its input stays failed');
  assert.equal(action('hub-shared'), 'retry', 'succeeded, but its outputs left the cache');
  assert.equal(action('hub-shared-a'), 'keep');
  assert.equal(action('hub-shared-b'), 'keep');
  assert.equal(action('hub-slow'), 'retry');
  assert.equal(action('hub-needs-feature'), 'create');
});

test('a dependency failure is reset when its failed input gets another try', async () => {
  const p = await planWith({
    known: {
      'hub-fails': { status: 'failed', failureKind: 'infrastructure' },
      'hub-after-fail': { status: 'dependency-failed', failureKind: null },
    },
  });
  const action = (n: string) => p.builds.find((b) => b.node.drvHash === node(n).drvHash)?.action;
  assert.equal(action('hub-fails'), 'retry');
  assert.equal(action('hub-after-fail'), 'reset');
});

test('a succeeded build whose outputs are in the cache is never planned again', async () => {
  const p = await planWith({
    cached: ['hub-shared'],
    known: { 'hub-shared': { status: 'succeeded', failureKind: null } },
    roots: [node('hub-shared-a').drvPath],
  });
  assert.deepEqual(names(p), ['hub-shared-a']);
});

test('a root missing from the graph is an error', async () => {
  await assert.rejects(
    () => planWith({ roots: ['/nix/store/00000000000000000000000000000000-nope.drv'] }),
    /missing from the derivation graph/,
  );
});

test('a wide graph is planned with one lookup of each kind per batch, not one per derivation', async () => {
  // 2.5 batches of leaves under one root each: the leaves' level takes ceil(5000 / PLAN_BATCH) queries.
  const leaves = PLAN_BATCH * 2.5;
  const wide: DrvGraph = new Map();
  const hash = (i: number) => {
    const bytes = Buffer.alloc(20);
    bytes.writeUInt32BE(i);
    return encodeNix32(bytes);
  };
  const drv = (i: number) => `/nix/store/${hash(i)}-n${i}.drv`;
  for (let i = 1; i <= leaves; i++)
    wide.set(drv(i), {
      drvPath: drv(i),
      drvHash: hash(i),
      system: 'x86_64-linux',
      requiredFeatures: [],
      outputs: { out: `/nix/store/${hash(i)}-o${i}` },
      inputDrvs: [],
    });
  const inputs = [...wide.keys()];
  wide.set(drv(0), { ...(wide.get(drv(1)) as DrvNode), drvPath: drv(0), drvHash: hash(0), inputDrvs: inputs.sort() });
  const calls = { inCache: [] as number[], existing: [] as number[] };
  const p = await plan({
    graph: wide,
    roots: [drv(0)],
    inCache: (outs) => {
      calls.inCache.push(outs.length);
      return new Set();
    },
    existing: (hashes) => {
      calls.existing.push(hashes.length);
      return new Map();
    },
  });
  assert.equal(p.builds.length, leaves + 1);
  assert.deepEqual(calls.inCache, [1, PLAN_BATCH, PLAN_BATCH, PLAN_BATCH / 2]);
  assert.deepEqual(calls.existing, [PLAN_BATCH, PLAN_BATCH, PLAN_BATCH / 2 + 1]);
});
