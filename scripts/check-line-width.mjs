// Lines at most 120 columns in code (the width Biome formats to), also where Biome leaves a line
// alone: long strings, SQL and comments. Migrations are exempt: an applied migration never changes.
// Markdown is prose and tables, and is exempt too. `npm run lint` (which .ci/run runs) runs it after Biome,
// so CI fails on a longer line.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const MAX = 120;
const CODE = /\.(ts|tsx|mjs|js|cjs|nix|sh)$/;
const files = execFileSync('git', ['ls-files', '-z'], { encoding: 'utf8' })
  .split('\0')
  .filter((f) => CODE.test(f) && !f.startsWith('migrations/'));
const over = [];
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    continue; // listed by git but deleted in the work tree
  }
  text.split('\n').forEach((line, i) => {
    if ([...line].length > MAX) over.push(`${file}:${i + 1}: ${[...line].length} columns`);
  });
}
if (over.length > 0) {
  process.stderr.write(`${over.join('\n')}\n${over.length} line(s) over ${MAX} columns\n`);
  process.exit(1);
}
