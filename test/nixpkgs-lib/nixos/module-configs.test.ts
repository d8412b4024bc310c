// The module half of the check on test/fixtures/nixos/module-configs.json (the other half,
// test/integration/nixos/module-configs.test.ts, runs everywhere): the module, evaluated with
// nixpkgs' lib, passes nixos/config.nix exactly the recorded inputs and writes exactly the
// recorded configs, from the module sources whose digests are recorded beside them (which the
// other half compares with the sources of every run). NARHUB_UPDATE_FIXTURES=1 rewrites the three files.
import { writeFile } from 'node:fs/promises';
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
import { evalNixJson, nixpkgsLib } from '../../helpers/nix-eval.js';

test('the module passes config.nix the committed inputs and writes the committed configs', async () => {
  const sources = await moduleSourceDigests();
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
  // The sources must not have changed while they were evaluated, or the digests would vouch for
  // something that was not.
  assert.deepEqual(await moduleSourceDigests(), sources, 'a module source changed during the evaluation');
  if (process.env.NARHUB_UPDATE_FIXTURES === '1') {
    await writeFile(CONFIGS, `${JSON.stringify(configs, null, 2)}\n`);
    await writeFile(INPUTS, `${JSON.stringify(inputs, null, 2)}\n`);
    await writeFile(SOURCES, `${JSON.stringify(sources, null, 2)}\n`);
  }
  assert.deepEqual(await readJson(CONFIGS), configs, `${CONFIGS} is stale: ${RECHECK}`);
  assert.deepEqual(await readJson(INPUTS), inputs, `${INPUTS} is stale: ${RECHECK}`);
  assert.deepEqual(await readJson(SOURCES), sources, `${SOURCES} is stale: ${RECHECK}`);
});
