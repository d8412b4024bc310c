// The NixOS module takes the type, default and description of every `services.narhub.settings`
// option from nixos/config-schema.json: it must be the config schema narhub validates with.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigSchema } from '../../../src/config/schema.js';
import { repoRoot } from '../../helpers/repo.js';

const FILE = join(repoRoot(), 'nixos', 'config-schema.json');

test('nixos/config-schema.json is src/config/schema.ts as JSON Schema', async () => {
  const fresh = `${JSON.stringify(ConfigSchema, null, 2)}\n`;
  if (process.env.NARHUB_UPDATE_FIXTURES === '1') await writeFile(FILE, fresh);
  assert.equal(await readFile(FILE, 'utf8'), fresh, `${FILE} is stale: rerun this test with NARHUB_UPDATE_FIXTURES=1`);
});
