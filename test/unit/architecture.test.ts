import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import assert from 'node:assert/strict';

/**
 * The layer rules of docs/architecture.md, checked on the sources: imports point down only.
 * `errors.ts` and `units.ts` are leaves every layer may use; `cache-name.ts` a leaf for the layers
 * that meet cache names. Type-only imports may also reach the layers named in TYPE_ONLY (e.g. HTTP
 * naming a database row type), since they vanish at run time.
 */
const LAYERS: Record<string, string[]> = {
  errors: [],
  units: [],
  'cache-name': ['errors'],
  logger: [],
  nix: ['errors'],
  io: ['errors', 'nix'],
  storage: ['errors', 'io'],
  db: ['errors', 'nix'],
  config: ['errors'],
  cache: ['errors', 'cache-name', 'nix', 'io', 'storage', 'db'],
  protocol: ['errors', 'cache-name', 'nix'],
  push: ['errors', 'nix', 'io'],
  hub: ['errors', 'cache-name', 'nix', 'io', 'db', 'cache', 'protocol', 'logger'],
  spoke: ['errors', 'cache-name', 'nix', 'io', 'protocol', 'push', 'logger'],
  http: ['errors', 'cache-name', 'nix', 'io', 'cache', 'hub', 'forge', 'protocol', 'logger'],
  forge: ['errors', 'db', 'hub', 'logger'],
  cli: ['*'],
};
const ALLOWED: Record<string, string[]> = Object.fromEntries(
  Object.entries(LAYERS).map(([layer, allowed]) => [layer, layer === 'units' ? allowed : [...allowed, 'units']]),
);
const TYPE_ONLY: Record<string, string[]> = {
  http: ['db', 'storage', 'config'],
  hub: ['storage', 'config'],
  forge: ['config'],
  spoke: ['config'],
};

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const src = join(root, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = join(dir, entry);
    if (statSync(full).isDirectory()) return sources(full);
    return /\.tsx?$/.test(entry) ? [full] : [];
  });
}

function layerOf(file: string): string {
  const rel = relative(src, file);
  const first = rel.split('/')[0]!;
  return first.replace(/\.tsx?$/, '');
}

test('imports follow the layer rules of docs/architecture.md', () => {
  const violations: string[] = [];
  const files = sources(src);
  assert.ok(files.length > 20, 'expected to find the sources');
  for (const file of files) {
    const from = layerOf(file);
    const allowed = ALLOWED[from];
    assert.ok(allowed, `layer ${from} (${relative(root, file)}) is not described in the rules`);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?[^'"]*?from\s+['"](\.[^'"]+)['"]/gm)) {
      const typeOnly = m[2] !== undefined;
      const target = layerOf(resolve(dirname(file), m[3]!).replace(/\.js$/, '.ts'));
      if (target === from || allowed.includes('*') || allowed.includes(target)) continue;
      if (typeOnly && (TYPE_ONLY[from] ?? []).includes(target)) continue;
      violations.push(`${relative(root, file)} imports ${m[3]} (${from} -> ${target})`);
    }
  }
  assert.deepEqual(violations, []);
});
