import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseShowDerivation, requiredFeaturesOf, topologicalOrder } from '../../../src/hub/derivation-graph.js';
import { attrPath, flakeRefAt } from '../../../src/hub/evaluator.js';
import { bullPriority } from '../../../src/hub/dispatcher.js';

// Real `nix show-derivation -r` output (Nix 2.8) of test/fixtures/flake-hub's checks.
const fixtures = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../test/fixtures/hub');
const raw = JSON.parse(readFileSync(join(fixtures, 'show-derivation-r.json'), 'utf8')) as Record<string, unknown>;
const roots = Object.values(
  JSON.parse(readFileSync(join(fixtures, 'check-drvs.json'), 'utf8')) as Record<string, string>,
);
const graph = parseShowDerivation(raw);
const byName = (name: string) => [...graph.values()].find((n) => n.drvPath.endsWith(`-${name}.drv`))!;

test('parses every derivation of real show-derivation output', () => {
  assert.equal(graph.size, 10);
  const chain3 = byName('hub-chain-3');
  assert.equal(chain3.drvHash, chain3.drvPath.slice('/nix/store/'.length, '/nix/store/'.length + 32));
  assert.equal(chain3.system, 'x86_64-linux');
  assert.deepEqual(chain3.inputDrvs, [byName('hub-chain-2').drvPath]);
  assert.match(chain3.outputs.out!, /^\/nix\/store\/[0-9a-z]{32}-hub-chain-3$/);
  assert.deepEqual(byName('hub-shared-a').inputDrvs, [byName('hub-shared').drvPath]);
  assert.deepEqual(byName('hub-shared-b').inputDrvs, [byName('hub-shared').drvPath]);
  assert.deepEqual(byName('hub-needs-feature').requiredFeatures, ['narhub-test-unobtainium']);
  assert.deepEqual(byName('hub-fails').requiredFeatures, []);
  for (const r of roots) assert.ok(graph.has(r), `root ${r} is in the graph`);
});

test('orders dependencies before dependents, each once', () => {
  const order = topologicalOrder(graph, roots);
  assert.equal(order.length, 10);
  assert.equal(new Set(order).size, 10);
  const at = (name: string) => order.indexOf(byName(name).drvPath);
  assert.ok(
    at('hub-chain-1') < at('hub-chain-2') &&
      at('hub-chain-2') < at('hub-chain-3') &&
      at('hub-chain-3') < at('hub-slow'),
  );
  assert.ok(at('hub-shared') < at('hub-shared-a') && at('hub-shared') < at('hub-shared-b'));
  assert.ok(at('hub-fails') < at('hub-after-fail'));
  // Only what the roots reach.
  assert.deepEqual(topologicalOrder(graph, [byName('hub-chain-2').drvPath]), [
    byName('hub-chain-1').drvPath,
    byName('hub-chain-2').drvPath,
  ]);
});

test('a cycle is an error, and a deep chain does not overflow the stack', () => {
  const a = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a.drv';
  const b = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b.drv';
  const node = (p: string, inputs: string[]) => ({
    outputs: { out: { path: p.replace('.drv', '') } },
    inputDrvs: Object.fromEntries(inputs.map((i) => [i, ['out']])),
    system: 'x86_64-linux',
    env: {},
  });
  assert.throws(() => topologicalOrder(parseShowDerivation({ [a]: node(a, [b]), [b]: node(b, [a]) }), [a]), /cycle/);
  const deep: Record<string, unknown> = {};
  const names = Array.from(
    { length: 20_000 },
    (_, i) =>
      `/nix/store/${String(i)
        .padStart(32, '0')
        .replace(/[eotu]/g, '0')}-d${i}.drv`,
  );
  for (const [i, p] of names.entries()) deep[p] = node(p, i > 0 ? [names[i - 1]!] : []);
  assert.equal(topologicalOrder(parseShowDerivation(deep), [names.at(-1)!]).length, 20_000);
});

test('required features come from env, or from __json with structured attributes', () => {
  assert.deepEqual(requiredFeaturesOf({ requiredSystemFeatures: 'kvm  big-parallel kvm' }), ['big-parallel', 'kvm']);
  assert.deepEqual(requiredFeaturesOf({ __json: JSON.stringify({ requiredSystemFeatures: ['nixos-test', 'kvm'] }) }), [
    'kvm',
    'nixos-test',
  ]);
  assert.deepEqual(requiredFeaturesOf({}), []);
  assert.deepEqual(requiredFeaturesOf(undefined), []);
});

test('multiple outputs and newer Nix (platform) are understood', () => {
  const p = '/nix/store/cccccccccccccccccccccccccccccccc-multi.drv';
  const g = parseShowDerivation({
    [p]: {
      outputs: {
        out: { path: '/nix/store/dddddddddddddddddddddddddddddddd-multi' },
        dev: { path: '/nix/store/ffffffffffffffffffffffffffffffff-multi-dev' },
      },
      inputDrvs: {},
      platform: 'aarch64-linux',
      env: {},
    },
  });
  assert.deepEqual(Object.keys(g.get(p)!.outputs).sort(), ['dev', 'out']);
  assert.equal(g.get(p)!.system, 'aarch64-linux');
  assert.throws(() => parseShowDerivation({ '/nix/store/cccccccccccccccccccccccccccccccc-x': {} }), /not a derivation/);
});

test('attribute paths are quoted where needed; refs go into the flake URL', () => {
  assert.equal(attrPath(['checks', 'x86_64-linux', 'shared-a']), 'checks.x86_64-linux.shared-a');
  assert.equal(attrPath(['packages', 'x86_64-linux', 'foo.bar']), 'packages.x86_64-linux."foo.bar"');
  assert.equal(flakeRefAt('git+https://example.org/repo.git', 'main'), 'git+https://example.org/repo.git?ref=main');
  assert.equal(flakeRefAt('git+file:///src/repo?dir=sub', 'release-1'), 'git+file:///src/repo?dir=sub&ref=release-1');
  assert.equal(
    flakeRefAt('git+https://example.org/repo.git?ref=old', 'a'.repeat(40)),
    `git+https://example.org/repo.git?rev=${'a'.repeat(40)}`,
  );
  assert.equal(flakeRefAt('path:/src/flake', null), 'path:/src/flake');
  assert.throws(() => flakeRefAt('path:/src/flake', 'main'), /no branches/);
});

test('a higher evaluation priority is served first by BullMQ (lower number)', () => {
  assert.ok(bullPriority(100) < bullPriority(0));
  assert.ok(bullPriority(0) < bullPriority(-100));
  assert.equal(bullPriority(1000), 1);
  assert.equal(bullPriority(5000), 1);
});
