// The long run of the property tests (`npm run fuzz`): every parser property with
// NARHUB_FUZZ_RUNS cases (default 100,000 each, eleven properties: 1.1 million), then the model-based upload
// test with NARHUB_FUZZ_MODEL_RUNS command sequences (default 2,000). `npm test` runs the same
// tests briefly. A failure prints a seed and a path; set NARHUB_FUZZ_SEED and NARHUB_FUZZ_PATH to
// replay it.
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const env = {
  ...process.env,
  NARHUB_FUZZ_RUNS: process.env.NARHUB_FUZZ_RUNS ?? '100000',
  NARHUB_FUZZ_MODEL_RUNS: process.env.NARHUB_FUZZ_MODEL_RUNS ?? '2000',
};
const files = [
  `${root}unit/properties/parsers.test.js`,
  `${root}unit/units.test.js`,
  `${root}integration/http/upload-model.test.js`,
];
console.log(`fuzz: ${env.NARHUB_FUZZ_RUNS} cases per parser property, ${env.NARHUB_FUZZ_MODEL_RUNS} upload sequences`);
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--enable-source-maps', ...files], {
  stdio: 'inherit',
  env,
});
process.exit(result.status ?? 1);
