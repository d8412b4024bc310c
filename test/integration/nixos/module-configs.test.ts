// test/fixtures/nixos/module-configs.json holds the configs the NixOS module writes for four
// scenarios; check-config.test.ts feeds them to `narhub check-config` on every run. Two halves
// keep the fixture true:
// - without nixpkgs: nixos/config.nix (the module's config writer, builtins only) turns the
//   recorded inputs (module-config-inputs.json) into exactly those configs;
// - with nixpkgs' lib: the module, evaluated, passes config.nix exactly those inputs and writes
//   exactly those configs (test/nixpkgs-lib/nixos/module-configs.test.ts, `npm run test:nixpkgs-lib`).
// A change to config.nix fails this half anywhere; a change to the module's options or their
// defaults fails the other, which needs NIXPKGS_LIB (see test/helpers/nix-eval.ts).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evalNixJson } from '../../helpers/nix-eval.js';
import { repoRoot } from '../../helpers/repo.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const FIXTURES = join(repoRoot(), 'test', 'fixtures', 'nixos');
const CONFIGS = join(FIXTURES, 'module-configs.json');
const INPUTS = join(FIXTURES, 'module-config-inputs.json');
const SCENARIOS = ['minimal', 'full', 'external', 'localHub'];
const CREDENTIALS = '/run/credentials/narhub.service/';

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

/** Every string in a JSON value, with the path of keys that leads to it. */
function strings(value: Json, path: string[] = []): [string[], string][] {
  if (typeof value === 'string') return [[path, value]];
  if (Array.isArray(value)) return value.flatMap((v, i) => strings(v, [...path, String(i)]));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => strings(v, [...path, k]));
  return [];
}

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
