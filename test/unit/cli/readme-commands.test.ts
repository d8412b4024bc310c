// Every `narhub …` line in the README's code blocks names a command that exists, with flags that
// command takes; a concrete example (no placeholders) must also parse as the CLI would parse it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseCommand } from '../../../src/cli/command-spec.js';
import { COMMANDS, commandsNamed, findCommand } from '../../../src/cli/specs/index.js';
import { splitCommandLine } from '../../helpers/shell-words.js';

const README = new URL('../../../../README.md', import.meta.url);

/** Every line of a fenced code block that runs narhub, continuation lines joined. */
function readmeCommandLines(markdown: string): string[] {
  const lines: string[] = [];
  for (const block of markdown.matchAll(/^```[^\n]*\n([\s\S]*?)^```/gm)) {
    const joined = block[1]!.replace(/\\\n\s*/g, ' ').split('\n');
    // A synopsis may continue on an indented line (the spoke's flags).
    for (const line of joined) {
      const text = line.trim().replace(/^\$ /, '');
      if (text.startsWith('narhub ')) lines.push(text);
      else if (/^\s+\[--/.test(line) && lines.length > 0) lines[lines.length - 1] += ` ${text}`;
    }
  }
  return lines;
}

/** A synopsis (`[--json]`, `NAME`, `a|b`, `<drv hash>`) rather than a command one could paste. */
const isSynopsis = (line: string) =>
  /\[|<|\s[A-Z][A-Z_]*\b|\|/.test(line.replace(/#.*$/, '').replace(/'[^']*'/g, "''"));

test('every narhub line in the README names a real command and only flags it takes', () => {
  const lines = readmeCommandLines(readFileSync(README, 'utf8'));
  assert.ok(lines.length >= 20, `found only ${lines.length} narhub lines in the README`);
  const problems: string[] = [];
  for (const line of lines) {
    const code = line.replace(/\s#.*$/, '');
    const words = code.split(/\s+/).slice(1);
    // The command words: `cache create`, or alternatives `build show|restart|cancel`.
    const group = commandsNamed(words[0]!);
    if (group.length === 0) {
      problems.push(`${line}: no command ${words[0]}`);
      continue;
    }
    // A subcommand wins over a whole command of the same word (`eval list` over `eval PROJECT`), as in findCommand.
    const subs = (words[1] ?? '').split('|').map((sub) => group.find((c) => c.name === `${words[0]} ${sub}`));
    const specs = subs.every((s) => s !== undefined) ? subs : group.filter((c) => c.name === words[0]);
    if (specs.length === 0 || specs.some((s) => s === undefined)) {
      problems.push(`${line}: no such subcommand of ${words[0]}`);
      continue;
    }
    for (const flag of code.matchAll(/(?:^|[\s[|])--([a-z][a-z0-9-]*)/g)) {
      for (const spec of specs)
        if (!(flag[1]! in spec!.flags)) problems.push(`${line}: narhub ${spec!.name} has no --${flag[1]}`);
    }
    if (!isSynopsis(code)) {
      const argv = splitCommandLine(code).slice(1);
      const found = findCommand(argv);
      try {
        assert.ok(found && 'spec' in found, 'no command');
        parseCommand(found.spec, found.rest);
      } catch (err) {
        problems.push(`${line}: ${(err as Error).message}`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test("the README's command-line synopsis lists every command", () => {
  const lines = readmeCommandLines(readFileSync(README, 'utf8'));
  const shown = new Set(
    lines.flatMap((l) => {
      const [first, second] = l.split(/\s+/).slice(1);
      return (second ?? '')
        .split('|')
        .map((s) => `${first} ${s}`)
        .concat(first!);
    }),
  );
  for (const c of COMMANDS) assert.ok(shown.has(c.name), `the README shows no narhub ${c.name}`);
});
