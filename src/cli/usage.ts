// What narhub prints about itself: the overview of `narhub help`, a command's help, and the usage
// shown with a usage error. Built from the specs alone, so printing it never loads what the
// commands need (Fastify, the AWS SDK, BullMQ…).
import { type CommandSpec, helpText, usageLine } from './command-spec.js';
import { COMMANDS, commandsNamed } from './specs/index.js';

const MORE = 'Run `narhub help COMMAND` or `narhub COMMAND --help` for its flags, their defaults and an example.';

/** `narhub help`: every command with what it does. */
export function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'narhub: a Nix binary cache and build hub',
    '',
    'usage: narhub COMMAND [ARGUMENTS…] [FLAGS…]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    MORE,
  ].join('\n');
}

/** `narhub help WORD…`: the help of the command named, or of every command of a group; undefined if none. */
export function helpFor(words: string[]): string | undefined {
  const exact = COMMANDS.find((c) => c.name === words.join(' '));
  if (exact) return helpText(exact);
  if (words.length !== 1) return undefined;
  const group = commandsNamed(words[0]!);
  if (group.length === 0) return undefined;
  return group.map(helpText).join('\n\n');
}

/** The usage shown with a usage error: the command's own line, or its group's lines. */
export function usageOf(specs: readonly CommandSpec[]): string {
  const lines = specs.map((s) => `       ${usageLine(s, 7)}`);
  const help = specs.length === 1 ? specs[0]!.name : specs[0]!.name.split(' ')[0]!;
  return `usage: ${lines.join('\n').slice(7)}\nRun \`narhub help ${help}\` for details.`;
}

/** With no command or an unknown one: the commands' names, one line each. */
export function shortOverview(): string {
  return `usage: narhub COMMAND …, one of:\n${[...new Set(COMMANDS.map((c) => c.name.split(' ')[0]))]
    .map((w) => `  ${w}`)
    .join('\n')}\n${MORE}`;
}
