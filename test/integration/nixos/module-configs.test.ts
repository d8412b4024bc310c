// test/fixtures/nixos/module-configs.json holds the configs the NixOS module writes for four
// scenarios; check-config.test.ts feeds them to `narhub check-config` on every run. Three checks
// keep the fixture true, two of them here, on every run:
// - nixos/config.nix (the module's config writer, builtins only) turns the recorded inputs
//   (module-config-inputs.json) into exactly those configs;
// - the module's sources (module.nix, settings.nix, the schema, the scenarios) are the ones the
//   fixture was last checked against with nixpkgs' lib, by SHA-256 (module-configs-sources.json);
// - with nixpkgs' lib, the module, evaluated, passes config.nix exactly those inputs and writes
//   exactly those configs (test/nixpkgs-lib/nixos/module-configs.test.ts, `npm run
//   test:nixpkgs-lib`), and that run records the digests.
// CI cannot evaluate the module (no nixpkgs' lib there: test/helpers/nix-eval.ts), but a change
// to config.nix fails the first check, and one to the module, its options or their defaults
// fails the second, until the module half has been run on it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CONFIGS,
  INPUTS,
  type Json,
  moduleSourceDigests,
  RECHECK,
  readJson,
  SCENARIOS,
  SOURCES,
} from '../../helpers/module-fixture.js';
import { evalNixJson } from '../../helpers/nix-eval.js';

const CREDENTIALS = '/run/credentials/narhub.service/';

/** Every string in a JSON value, with the path of keys that leads to it. */
function strings(value: Json, path: string[] = []): [string[], string][] {
  if (typeof value === 'string') return [[path, value]];
  if (Array.isArray(value)) return value.flatMap((v, i) => strings(v, [...path, String(i)]));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => strings(v, [...path, k]));
  return [];
}

test('the module sources are those module-configs.json was last checked against with nixpkgs lib', async () => {
  const recorded = await readJson<Record<string, string>>(SOURCES);
  const now = await moduleSourceDigests();
  const changed = Object.keys(now).filter((path) => recorded[path] !== now[path]);
  assert.deepEqual(changed, [], `changed since the fixture was checked against the evaluated module: ${RECHECK}`);
  assert.deepEqual(Object.keys(recorded).sort(), Object.keys(now).sort());
});

test('nixos/config.nix writes the committed module configs from the committed inputs', async () => {
  const configs = await readJson<Record<string, Json>>(CONFIGS);
  const inputs = await readJson<Record<string, Json>>(INPUTS);
  assert.deepEqual(Object.keys(configs).sort(), [...SCENARIOS].sort());
  assert.deepEqual(Object.keys(inputs).sort(), [...SCENARIOS].sort());
  const { value } =
    await evalNixJson<Record<string, { config: Json; credentials: Record<string, string> }>>('render-config.nix');
  for (const scenario of SCENARIOS) {
    const rendered = value[scenario]!;
    assert.deepEqual(rendered.config, configs[scenario], `${scenario}: ${CONFIGS} is stale`);
    // Each credential the config names is loaded from the secret file the settings gave.
    const named = strings(rendered.config)
      .map(([, v]) => v)
      .filter((v) => v.startsWith(CREDENTIALS))
      .map((v) => v.slice(CREDENTIALS.length))
      .sort();
    assert.deepEqual(Object.keys(rendered.credentials).sort(), named, scenario);
    const given = Object.fromEntries(
      strings(inputs[scenario]!)
        .filter(([path]) => path.at(-1)!.endsWith('File'))
        .map(([path, v]) => [path.filter((p) => p !== 'settings').join('.'), v]),
    );
    for (const [name, file] of Object.entries(rendered.credentials))
      assert.equal(file, given[name], `${scenario}: ${name}`);
  }
});
