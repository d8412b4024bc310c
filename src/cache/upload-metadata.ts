import { NarhubError, isNarhubError } from '../errors.js';
import { formatHash, parseHash } from '../nix/hash.js';
import type { NarInfo } from '../nix/narinfo.js';
import { isDerivationPath, parseStorePath } from '../nix/store-path.js';

/** The metadata line may not be longer than this (thousands of references fit easily). */
export const MAX_METADATA_LINE = 1024 * 1024;

const METADATA_FIELDS = new Set([
  'storePath',
  'narHash',
  'narSize',
  'references',
  'deriver',
  'ca',
  'sigs',
  'compression',
]);

/** How the NAR after the line is sent: raw, or as a zstd frame the client compressed. */
export type BodyCompression = 'none' | 'zstd';

export interface UploadMetadata {
  /** What the commit checks, with `url` and the file fields still to be filled in. */
  info: NarInfo;
  body: BodyCompression;
}

/**
 * Parses the metadata line of a native upload (compact JSON: storePath, narHash, narSize,
 * references, and optionally deriver, ca, sigs, and compression, `none` or `zstd`; paths are
 * full store paths) into the NarInfo the commit checks and how the body is compressed.
 */
export function parseUploadMetadata(line: Buffer): UploadMetadata {
  let raw: unknown;
  try {
    raw = JSON.parse(line.toString('utf8'));
  } catch (err) {
    throw new NarhubError('BAD_REQUEST', `metadata line is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new NarhubError('BAD_REQUEST', 'metadata line must be a JSON object');
  const m = raw as Record<string, unknown>;
  const unknown = Object.keys(m).filter((k) => !METADATA_FIELDS.has(k));
  if (unknown.length > 0)
    throw new NarhubError(
      'BAD_REQUEST',
      `metadata: unknown field ${unknown.map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}`,
    );

  const field = <T>(name: string, what: string, ok: (v: unknown) => v is T): T => {
    const v = m[name];
    if (!ok(v)) throw new NarhubError('BAD_REQUEST', `metadata: ${name} must be ${what}`);
    return v;
  };
  const isString = (v: unknown): v is string => typeof v === 'string';
  const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
  const optional = <T>(name: string, what: string, ok: (v: unknown) => v is T): T | undefined =>
    m[name] === undefined || m[name] === null ? undefined : field(name, what, ok);
  // Keep the code of the underlying check (STORE_PATH_INVALID, HASH_INVALID), say where it failed.
  const checked = <T>(name: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (isNarhubError(err)) throw new NarhubError(err.code, `metadata: ${name}: ${err.message}`);
      throw err;
    }
  };

  const storePath = field('storePath', 'a string', isString);
  checked('storePath', () => parseStorePath(storePath));
  const narHashText = field('narHash', 'a string', isString);
  const narHash = checked('narHash', () => {
    const hash = parseHash(narHashText);
    if (hash.algo !== 'sha256') throw new NarhubError('HASH_INVALID', `must be sha256, got ${hash.algo}`);
    return formatHash(hash, 'nix32');
  });
  const narSize = field(
    'narSize',
    'a positive integer',
    (v): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0,
  );
  const references = field('references', 'an array of store paths', isStringArray).map((ref, i) =>
    checked(`references[${i}]`, () => parseStorePath(ref).basename),
  );
  const deriverPath = optional('deriver', 'a store path or null', isString);
  const deriver =
    deriverPath === undefined
      ? undefined
      : checked('deriver', () => {
          const p = parseStorePath(deriverPath);
          if (!isDerivationPath(p)) throw new NarhubError('STORE_PATH_INVALID', `${deriverPath} is not a .drv`);
          return p.basename;
        });
  const ca = optional('ca', 'a string or null', isString);
  const sigs = optional('sigs', 'an array of strings', isStringArray) ?? [];
  const body = optional('compression', '"none" or "zstd"', (v): v is BodyCompression => v === 'none' || v === 'zstd');

  const info: NarInfo = {
    storePath,
    url: '',
    compression: 'zstd',
    narHash,
    narSize,
    references: [...new Set(references)],
    sigs: [...new Set(sigs)],
  };
  if (deriver !== undefined) info.deriver = deriver;
  if (ca !== undefined) info.ca = ca;
  return { info, body: body ?? 'none' };
}
