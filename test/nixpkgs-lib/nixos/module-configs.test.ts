// The module half of the check on test/fixtures/nixos/module-configs.json (the other half,
// test/integration/nixos/module-configs.test.ts, runs everywhere): the module, evaluated with
// nixpkgs' lib, passes nixos/config.nix exactly the recorded inputs and writes exactly the
// recorded configs. NARHUB_UPDATE_FIXTURES=1 rewrites both files.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evalNixJson, nixpkgsLib } from '../../helpers/nix-eval.js';
import { repoRoot } from '../../helpers/repo.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const FIXTURES = join(repoRoot(), 'test', 'fixtures', 'nixos');
const CONFIGS = join(FIXTURES, 'module-configs.json');
const INPUTS = join(FIXTURES, 'module-config-inputs.json');
const SCENARIOS = ['minimal', 'full', 'external', 'localHub'];

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

test('the module passes config.nix the committed inputs and writes the committed configs', async () => {
  const configs: Record<string, Json> = {};
  const inputs: Record<string, Json> = {};
  for (const scenario of SCENARIOS) {
    const { value } = await evalNixJson<{ generatedConfig: Json; configInputs: Json }>('eval-module.nix', {
      nixpkgsLib: nixpkgsLib(),
      scenario,
    });
    configs[scenario] = value.generatedConfig;
    inputs[scenario] = value.configInputs;
  }
  if (process.env.NARHUB_UPDATE_FIXTURES === '1') {
    await writeFile(CONFIGS, `${JSON.stringify(configs, null, 2)}\n`);
    await writeFile(INPUTS, `${JSON.stringify(inputs, null, 2)}\n`);
  }
  const stale = 'is stale: rerun this test with NARHUB_UPDATE_FIXTURES=1';
  assert.deepEqual(await readJson(CONFIGS), configs, `${CONFIGS} ${stale}`);
  assert.deepEqual(await readJson(INPUTS), inputs, `${INPUTS} ${stale}`);
});
