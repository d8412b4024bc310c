import { parseArgs } from 'node:util';
import { UsageError } from './usage-error.js';

/**
 * Each command is described once, as data (src/cli/specs/): what it does, its arguments, its flags
 * with their defaults, and examples. The same description parses the command line, prints
 * `--help` and `narhub help COMMAND`, and names the usage shown with a usage error, so the help
 * can never list a flag the parser refuses or miss one it takes. A new command adds a spec there
 * and a case in main.ts; nothing else.
 */
export interface FlagSpec {
  type: 'string' | 'boolean';
  /** What the value stands for in usage lines (`N`, `FILE`, `30d`). */
  value?: string;
  short?: string;
  /** The default, as the user would write it; shown in the help. */
  default?: string;
  help: string;
  /** The command cannot run without it: shown without brackets, and its absence is a usage error. */
  required?: boolean;
  /** Tuning flags (mostly for tests): parsed, listed in the help, but not in the usage line. */
  hidden?: boolean;
  /** May be given several times (`--exclude A --exclude B`); its value is then a list. */
  multiple?: boolean;
}

export type Flags = Record<string, FlagSpec>;

export interface CommandSpec<F extends Flags = Flags> {
  /** The words that select it: `serve`, `cache create`. */
  name: string;
  /** Positional arguments as the usage line shows them: `NAME`, `CACHE_URL PATH…`. */
  args?: string;
  positionals: { min: number; max: number };
  /** One line: what it does. */
  summary: string;
  /** More, when one line is not enough. */
  description?: string;
  flags: F;
  /** Whole command lines, each starting with `narhub`. */
  examples: string[];
}

/** Declares a spec and keeps its flags' literal types, so parseCommand's values are typed. */
export function command<const F extends Flags>(spec: CommandSpec<F>): CommandSpec<F> {
  return spec;
}

/** `--help` or `-h` was given: print the command's help and exit 0. */
export class HelpRequested extends Error {
  constructor(readonly spec: CommandSpec) {
    super(`help for ${spec.name}`);
    this.name = 'HelpRequested';
  }
}

type Values<F extends Flags> = {
  [K in keyof F]?: F[K]['type'] extends 'boolean' ? boolean : F[K]['multiple'] extends true ? string[] : string;
};

/** True when argv asks for help (before a `--`). */
export function wantsHelp(argv: string[]): boolean {
  for (const arg of argv) {
    if (arg === '--') return false;
    if (arg === '--help' || arg === '-h') return true;
  }
  return false;
}

/**
 * Parses argv (the words after the command's name) strictly: an unknown flag, a missing value,
 * a value given to a switch, too few or too many arguments is a UsageError naming that one thing.
 */
export function parseCommand<F extends Flags>(
  spec: CommandSpec<F>,
  argv: string[],
): { values: Values<F>; positionals: string[] } {
  if (wantsHelp(argv)) throw new HelpRequested(spec as unknown as CommandSpec);
  const options = Object.fromEntries(
    Object.entries(spec.flags).map(([name, f]) => [
      name,
      { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) },
    ]),
  );
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(explainParseError(err as Error & { code?: string }, spec), spec);
  }
  const count = parsed.positionals.length;
  const { min, max } = spec.positionals;
  if (count < min) {
    const names = (spec.args ?? '').split(' ').filter((w) => w !== '' && !w.startsWith('['));
    throw new UsageError(`missing ${names.slice(count).join(' ') || 'argument'}`, spec);
  }
  if (count > max) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[max])}`, spec);
  for (const [name, f] of Object.entries(spec.flags))
    if (f.required && (parsed.values as Record<string, unknown>)[name] === undefined)
      throw new UsageError(`missing --${name}`, spec);
  return { values: parsed.values as Values<F>, positionals: parsed.positionals };
}

function explainParseError(err: Error & { code?: string }, spec: CommandSpec): string {
  // Node quotes the flag: `'--jobs'`, `'-j, --jobs <value>'`.
  const quoted = /'(?:-[a-zA-Z], )?(--?[^' ]+)/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${quoted ?? err.message} for narhub ${spec.name}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /does not take an argument/.test(err.message)
        ? `${quoted} takes no value`
        : `${quoted ?? 'a flag'} needs a value`;
    default:
      return err.message.split('\n')[0]!;
  }
}

function flagUsage(name: string, f: FlagSpec): string {
  return f.type === 'boolean' ? `--${name}` : `--${name} ${f.value ?? 'VALUE'}`;
}

/** `[--flag VALUE]`, `--flag VALUE` when required, and `…` after either when it repeats. */
function flagInUsageLine(name: string, f: FlagSpec): string {
  const one = f.required ? flagUsage(name, f) : `[${flagUsage(name, f)}]`;
  return f.multiple ? `${one}…` : one;
}

/** Help is wrapped to this many columns, so it reads in an 80-column terminal. */
const WIDTH = 80;

/** Words (or `[--flag VALUE]` groups) laid out in lines of at most `width`, the later ones indented. */
function wrap(words: string[], width: number, indent: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line !== '' && line.length + 1 + w.length > width) {
      lines.push(line);
      line = ' '.repeat(indent) + w;
    } else line = line === '' ? w : `${line} ${w}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** The usage line: `narhub cache create NAME [--private] [--priority N]`, wrapped after `indent` columns. */
export function usageLine(spec: CommandSpec, indent = 0): string {
  const flags = Object.entries(spec.flags)
    .filter(([, f]) => !f.hidden)
    .map(([name, f]) => flagInUsageLine(name, f));
  const head = ['narhub', spec.name, spec.args].filter((w) => w).join(' ');
  return wrap([head, ...flags], WIDTH - indent, indent + head.split(' ', 2).join(' ').length + 1).join('\n');
}

/** What `narhub COMMAND --help` prints: what it does, its flags with their defaults, examples. */
export function helpText(spec: CommandSpec): string {
  const prose = (text: string) => wrap(text.split(/\s+/), WIDTH, 0);
  const lines = [`usage: ${usageLine(spec, 7)}`, '', ...prose(spec.summary)];
  for (const paragraph of spec.description?.split('\n\n') ?? []) lines.push('', ...prose(paragraph));
  const flags = Object.entries(spec.flags);
  if (flags.length > 0) {
    lines.push('', 'flags:');
    const left = flags.map(([name, f]) => `${f.short ? `-${f.short}, ` : '    '}${flagUsage(name, f)}`);
    const width = Math.min(24, Math.max(...left.map((l) => l.length)));
    flags.forEach(([, f], i) => {
      const text = f.default === undefined ? f.help : `${f.help} (default: ${f.default})`;
      const l = left[i]!;
      const column = 2 + width + 2;
      const body = wrap(text.split(' '), WIDTH - column, 0).map((t) => ' '.repeat(column) + t);
      if (l.length > width) lines.push(`  ${l}`, ...body);
      else lines.push(`  ${l.padEnd(width)}  ${body[0]!.trimStart()}`, ...body.slice(1));
    });
  }
  if (spec.examples.length > 0) lines.push('', spec.examples.length === 1 ? 'example:' : 'examples:');
  for (const e of spec.examples) lines.push(`  ${e}`);
  return lines.join('\n');
}
