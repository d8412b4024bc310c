// test/fixtures/nixos/: the configs the NixOS module writes for four scenarios, the inputs it hands
// nixos/config.nix for them, and the digests of the module's sources they were last checked
// against with nixpkgs' lib. Shared by the two halves of the check (test/integration/nixos and
// test/nixpkgs-lib/nixos module-configs.test.ts).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from './repo.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const FIXTURES = join(repoRoot(), 'test', 'fixtures', 'nixos');
export const CONFIGS = join(FIXTURES, 'module-configs.json');
export const INPUTS = join(FIXTURES, 'module-config-inputs.json');
export const SOURCES = join(FIXTURES, 'module-configs-sources.json');
export const SCENARIOS = ['minimal', 'full', 'external', 'localHub'];

/**
 * What decides the inputs the module hands config.nix in those scenarios, besides nixpkgs' lib:
 * the module and its option generator, the schema the options come from, and the harness that
 * holds the scenarios and the stub NixOS options.
 */
const MODULE_SOURCES = [
  'nixos/module.nix',
  'nixos/settings.nix',
  'nixos/config-schema.json',
  'test/integration/nixos/eval-module.nix',
];

export async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

/** A JSON value without its `description`s, which only the option documentation reads. */
function withoutDescriptions(value: Json): Json {
  if (Array.isArray(value)) return value.map(withoutDescriptions);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .filter(([k]) => k !== 'description')
        .map(([k, v]) => [k, withoutDescriptions(v)]),
    );
  return value;
}

/** SHA-256 of each module source (of the schema without descriptions), by path in the repository. */
export async function moduleSourceDigests(): Promise<Record<string, string>> {
  const digests: Record<string, string> = {};
  for (const path of MODULE_SOURCES) {
    let text = await readFile(join(repoRoot(), path), 'utf8');
    if (path.endsWith('.json')) text = JSON.stringify(withoutDescriptions(JSON.parse(text) as Json));
    digests[path] = createHash('sha256').update(text).digest('hex');
  }
  return digests;
}

/** Said when the fixture or its digests are stale: how to check it again and rewrite it. */
export const RECHECK =
  'run NIXPKGS_LIB=<a checkout of nix-community/nixpkgs.lib> NARHUB_UPDATE_FIXTURES=1 npm run test:nixpkgs-lib, ' +
  'which evaluates the module and rewrites the fixture';
