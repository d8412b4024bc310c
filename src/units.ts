/**
 * Sizes and durations as people write them, the same in the config file, on the command line and
 * in output: `50G`, `512M`, `30d`, `1h30m`. A bare number is bytes or seconds. A leaf module, like
 * errors.ts, so that every layer reads and prints them the one way.
 */

/** Powers of 1024, as Nix's own size settings (`min-free = 1G`) use them. */
const SIZE_UNITS = [
  ['P', 1024 ** 5],
  ['T', 1024 ** 4],
  ['G', 1024 ** 3],
  ['M', 1024 ** 2],
  ['K', 1024],
] as const;

const DURATION_UNITS = [
  ['y', 365 * 86_400],
  ['w', 7 * 86_400],
  ['d', 86_400],
  ['h', 3_600],
  ['m', 60],
  ['s', 1],
] as const;

export const SIZE_SYNTAX = 'a whole number of bytes, or a number with K, M, G, T or P (powers of 1024), e.g. 50G';
export const DURATION_SYNTAX = 'a whole number of seconds, or numbers with s, m, h, d, w or y, e.g. 30d or 1h30m';

/** Bytes from `50G`, `1.5M`, `4096`; undefined when the text is not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([KMGTP]?)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = m[2] === '' ? 1 : SIZE_UNITS.find(([u]) => u === m[2])![1];
  const bytes = Math.round(Number(m[1]) * unit);
  if (m[2] === '' && m[1]!.includes('.')) return undefined;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** `50G` for 50 GiB: the largest unit that divides exactly, else bytes, so parseSize reads back the same. */
export function formatSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) return String(bytes);
  for (const [unit, size] of SIZE_UNITS) if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

/** Seconds from `30d`, `1h30m`, `90`; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+$/.test(t)) return Number.isSafeInteger(Number(t)) ? Number(t) : undefined;
  if (!/^(\d+[ywdhms])+$/.test(t)) return undefined;
  let seconds = 0;
  let previous = Infinity;
  for (const [, n, u] of t.matchAll(/(\d+)([ywdhms])/g)) {
    const size = DURATION_UNITS.find(([unit]) => unit === u)![1];
    // Units from largest to smallest, each once: `1h30m`, not `30m1h` or `1h1h`.
    if (size >= previous) return undefined;
    previous = size;
    seconds += Number(n) * size;
  }
  return Number.isSafeInteger(seconds) ? seconds : undefined;
}

/** `30d`, `1h30m`, `0s`: whole units, largest first. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return String(seconds);
  let rest = Math.round(seconds);
  if (rest === 0) return '0s';
  let out = '';
  for (const [unit, size] of DURATION_UNITS) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}
