// docs/security.md names a test beside each claim: every file it names exists, and every title it
// quotes is a test in that file, so the page cannot point at a test that was renamed or deleted.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

const root = new URL('../../../', import.meta.url);
const page = readFileSync(new URL('docs/security.md', root), 'utf8');

test('every test docs/security.md cites exists, under the title it quotes', () => {
  const text = page.replace(/\s*\n\s*/g, ' ');
  // A citation: `dir/file.test.ts` (or a shared .ts suite), then optionally `: "title", "title"`.
  const citations = [
    ...text.matchAll(/`((?:unit|integration|e2e|nixpkgs-lib)\/[\w/.-]+\.ts)`(?::((?:\s*"[^"]+",?)+))?/g),
  ];
  assert.ok(citations.length >= 25, `found ${citations.length} citations`);
  const problems: string[] = [];
  for (const [, file, titles] of citations) {
    const path = new URL(`test/${file}`, root);
    if (!existsSync(path)) {
      problems.push(`no file test/${file}`);
      continue;
    }
    const source = readFileSync(path, 'utf8').replace(/\s*\n\s*/g, ' ');
    for (const [, title] of (titles ?? '').matchAll(/"([^"]+)"/g)) {
      // The title as a string literal of the file: '…', "…" or `…` (escaped quotes allowed).
      const quoted = [`'${title!.replace(/'/g, "\\'")}`, `"${title}`, `\`${title}`];
      if (!quoted.some((q) => source.includes(q))) problems.push(`test/${file} has no test "${title}"`);
    }
  }
  assert.deepEqual(problems, []);
});
