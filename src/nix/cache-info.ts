import { NarhubError } from '../errors.js';
import { quote } from './quote.js';

/** The `nix-cache-info` file (docs/protocol.md, nix-cache-info). */
export interface CacheInfo {
  storeDir: string;
  wantMassQuery: boolean;
  /** Lower is preferred; cache.nixos.org uses 40. */
  priority: number;
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

export function formatCacheInfo(info: CacheInfo): string {
  if (!info.storeDir.startsWith('/') || /[\s\x00-\x1f\x7f]/.test(info.storeDir)) {
    throw new NarhubError('CONFIG_INVALID', `nix-cache-info: invalid StoreDir ${quote(info.storeDir)}`);
  }
  if (!Number.isInteger(info.priority) || info.priority < INT32_MIN || info.priority > INT32_MAX) {
    throw new NarhubError('CONFIG_INVALID', `nix-cache-info: Priority must be a 32-bit integer, got ${info.priority}`);
  }
  return `StoreDir: ${info.storeDir}\nWantMassQuery: ${info.wantMassQuery ? 1 : 0}\nPriority: ${info.priority}\n`;
}

/**
 * Reads `nix-cache-info` the way Nix does, leniently: LF-split, blank and colon-less lines
 * skipped, the key untrimmed, the value trimmed of space/tab/CR/LF, unknown keys ignored, and a
 * later line overriding an earlier one. Only fields present in the text are returned.
 */
export function parseCacheInfo(text: string): Partial<CacheInfo> {
  const info: Partial<CacheInfo> = {};
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (line === '' || colon < 0) continue;
    const key = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '');
    if (key === 'StoreDir') info.storeDir = value;
    else if (key === 'WantMassQuery') info.wantMassQuery = value === '1';
    else if (key === 'Priority') info.priority = parseStoi(value);
  }
  return info;
}

/** C++ `std::stoi`: optional leading whitespace and sign, then digits; the rest is ignored. */
function parseStoi(value: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?[0-9]+)/.exec(value);
  if (m === null || m[1] === undefined) {
    throw new NarhubError('BAD_REQUEST', `nix-cache-info: Priority ${quote(value)} is not a number`);
  }
  const n = Number(m[1]) + 0; // + 0 turns "-0" into 0
  if (n < INT32_MIN || n > INT32_MAX) {
    throw new NarhubError('BAD_REQUEST', `nix-cache-info: Priority ${m[1]} is out of range`);
  }
  return n;
}
