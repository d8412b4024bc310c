import { expiryProblem } from '../cache/tokens.js';
import { DURATION_SYNTAX, parseDuration } from '../units.js';
import { UsageError } from './usage-error.js';

/**
 * `30d`, `12h`, `90m`, `2w`, `1y` (src/units.ts) from now, or an ISO date, as an absolute time in
 * ms: in the future and at most 100 years away (cache/tokens.ts).
 */
export function parseExpiry(text: string, now = Date.now()): number {
  // A bare number would be seconds from now: too easy to mistake for a date, so it needs a unit.
  const seconds = /^\d+$/.test(text) ? undefined : parseDuration(text);
  const at = seconds !== undefined ? now + seconds * 1000 : Date.parse(text);
  if (Number.isNaN(at))
    throw new UsageError(`invalid --expires ${JSON.stringify(text)}: use e.g. 30d, 12h, 90m or an ISO date`);
  const problem = expiryProblem(at, now);
  if (problem) throw new UsageError(`--expires ${JSON.stringify(text)} ${problem}`);
  return at;
}

/** Seconds from a duration flag: `90`, `15m`, `2h`. */
export function parseDurationFlag(text: string, flag: string): number {
  const seconds = parseDuration(text);
  if (seconds === undefined) throw new UsageError(`${flag} needs ${DURATION_SYNTAX}, got ${JSON.stringify(text)}`);
  return seconds;
}

export function parseInteger(text: string, flag: string): number {
  if (!/^-?\d+$/.test(text)) throw new UsageError(`${flag} needs a whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}
