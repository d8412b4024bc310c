import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './usage-error.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Strict flag parsing: an unknown flag, a missing value or a stray argument is a UsageError. */
export function parseFlags<O extends Options>(
  argv: string[],
  options: O,
  positionals: { min: number; max: number; names: string },
) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!);
  }
  if ((parsed.values as Record<string, unknown>).help) throw new UsageError('');
  const count = parsed.positionals.length;
  if (count < positionals.min) throw new UsageError(`missing ${positionals.names}`);
  if (count > positionals.max)
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[positionals.max])}`);
  return {
    values: parsed.values as { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string },
    positionals: parsed.positionals,
  };
}

/** `30d`, `12h`, `90m`, `2w`, `1y` or an ISO date, as an absolute time in ms. */
export function parseExpiry(text: string, now = Date.now()): number {
  const m = /^(\d+)([mhdwy])$/.exec(text);
  if (m) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_536_000_000 }[
      m[2] as 'm' | 'h' | 'd' | 'w' | 'y'
    ];
    return now + Number(m[1]) * unit;
  }
  const date = Date.parse(text);
  if (Number.isNaN(date))
    throw new UsageError(`invalid --expires ${JSON.stringify(text)}: use e.g. 30d, 12h, 90m or an ISO date`);
  return date;
}

export function parseInteger(text: string, flag: string): number {
  if (!/^-?\d+$/.test(text)) throw new UsageError(`${flag} needs a whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}
