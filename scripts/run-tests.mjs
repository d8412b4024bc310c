// Runs the compiled tests with Node's own test runner.
// `node scripts/run-tests.mjs [unit|integration|e2e ...]` limits the run to those folders.
// Without arguments it runs every folder but nixpkgs-lib, which needs a checkout of nixpkgs' lib
// that CI cannot get (test/helpers/nix-eval.ts); `npm run test:nixpkgs-lib` runs that one.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const wanted = process.argv.slice(2);
const suites =
  wanted.length > 0
    ? wanted
    : readdirSync(root).filter((d) => d !== 'nixpkgs-lib' && statSync(join(root, d)).isDirectory());

function collect(dir) {
  const out = [];
  for (const entry of readdirSync(dir).sort()) {
    const full = join(dir, entry);
    if (statSync(full).isDirectory()) out.push(...collect(full));
    else if (entry.endsWith('.test.js')) out.push(full);
  }
  return out;
}

const files = suites.flatMap((s) => collect(join(root, s)));
if (files.length === 0) {
  console.error(`no test files found under ${root} for ${suites.join(', ')}`);
  process.exit(1);
}
const concurrency = process.env.NARHUB_TEST_CONCURRENCY ?? '2';
const result = spawnSync(
  process.execPath,
  ['--test', `--test-concurrency=${concurrency}`, '--enable-source-maps', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
