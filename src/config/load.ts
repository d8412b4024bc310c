import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { Value, type ValueError } from '@sinclair/typebox/value';
import { NarhubError } from '../errors.js';
import { DURATION_SYNTAX, parseDuration, parseSize, SIZE_SYNTAX } from '../units.js';
import { ConfigSchema, type Config, MOVED_KEYS } from './schema.js';

export interface ConfigSources {
  /** Path of a JSON config file. */
  file?: string | undefined;
  /** Command-line overrides, already parsed. */
  overrides?: Partial<Pick<Config, 'dataDir' | 'listen'>>;
  env?: NodeJS.ProcessEnv;
  /** Where warnings go (a deprecated key); stderr by default. */
  warn?: (message: string) => void;
}

/**
 * Validates a raw config object; every problem is reported with its key path. A key of an
 * earlier version (`MOVED_KEYS`) is read at its new place, with a warning.
 */
export function parseConfig(raw: unknown, warn: (message: string) => void = () => {}): Config {
  const input = Value.Clone(raw ?? {}) as Record<string, unknown>;
  // Nested objects must exist for TypeBox to fill their defaults in.
  if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    moveKeys(input, warn);
    input.storage ??= { type: 'local' };
    input.zstd ??= {};
    input.upstream ??= {};
    input.hub ??= {};
    input.limits ??= {};
    input.gc ??= {};
  }
  withUnits(ConfigSchema, input, '');
  const withDefaults = Value.Default(ConfigSchema, input);
  const errors = [...Value.Errors(ConfigSchema, withDefaults)].flatMap((e) => explainUnion(e));
  if (errors.length > 0) {
    const lines = errors.slice(0, 10).map((e) => {
      const key = e.path === '' ? '(root)' : e.path.replace(/^\//, '').replaceAll('/', '.');
      // TypeBox reports an unknown key as a failure of the parent with the key in the value.
      if (
        e.schema &&
        (e.schema as { additionalProperties?: unknown }).additionalProperties === false &&
        typeof e.value === 'object' &&
        e.value !== null
      ) {
        const allowed = Object.keys((e.schema as { properties?: object }).properties ?? {});
        const unknown = Object.keys(e.value as object).filter((k) => !allowed.includes(k));
        if (unknown.length > 0)
          return `unknown key ${unknown.map((k) => (key === '(root)' ? k : `${key}.${k}`)).join(', ')}`;
      }
      return `${key}: ${e.message}`;
    });
    throw new NarhubError('CONFIG_INVALID', `invalid config: ${[...new Set(lines)].join('; ')}`);
  }
  const config = withDefaults as Config;
  const names = new Set<string>();
  for (const c of config.caches) {
    if (names.has(c.name)) throw new NarhubError('CONFIG_INVALID', `invalid config: cache ${c.name} is declared twice`);
    names.add(c.name);
  }
  parseListen(config.listen);
  return config;
}

function moveKeys(input: Record<string, unknown>, warn: (message: string) => void): void {
  for (const [old, [section, key]] of Object.entries(MOVED_KEYS)) {
    if (!(old in input)) continue;
    const target = input[section] ?? {};
    if (typeof target !== 'object' || target === null || Array.isArray(target)) continue; // the schema says why
    const into = target as Record<string, unknown>;
    if (key in into)
      throw new NarhubError(
        'CONFIG_INVALID',
        `invalid config: ${old} and ${section}.${key} are both set; ` +
          `${old} is the old name of ${section}.${key}: keep only that`,
      );
    into[key] = input[old];
    input[section] = into;
    delete input[old];
    warn(`config key ${old} is deprecated: it is ${section}.${key} now (read as such)`);
  }
}

/**
 * Replaces, in place, `64G` and `30d` in the fields the schema marks with a unit by bytes and
 * seconds, and refuses integers too large to compute with.
 */
function withUnits(schema: TSchema, value: unknown, key: string): void {
  if (typeof value !== 'object' || value === null) return;
  const s = schema as { properties?: Record<string, TSchema>; items?: TSchema; anyOf?: TSchema[] };
  for (const variant of s.anyOf ?? []) withUnits(variant, value, key);
  if (Array.isArray(value)) {
    if (s.items) for (const [i, item] of value.entries()) withUnits(s.items, item, `${key}.${i}`);
    return;
  }
  const object = value as Record<string, unknown>;
  for (const [name, field] of Object.entries(s.properties ?? {})) {
    const path = key === '' ? name : `${key}.${name}`;
    const unit = (field as { unit?: 'size' | 'duration' }).unit;
    const text = object[name];
    // JSON allows 1e300 where an integer is wanted; past 2^53 arithmetic on it is wrong.
    if ((field as { type?: string }).type === 'integer' && typeof text === 'number' && !Number.isSafeInteger(text))
      throw new NarhubError('CONFIG_INVALID', `invalid config: ${path}: ${text} is too large`);
    if (unit !== undefined && typeof text === 'string') {
      const parsed = unit === 'size' ? parseSize(text) : parseDuration(text);
      if (parsed === undefined)
        throw new NarhubError(
          'CONFIG_INVALID',
          `invalid config: ${path}: ${JSON.stringify(text)} is not ${unit === 'size' ? SIZE_SYNTAX : DURATION_SYNTAX}`,
        );
      object[name] = parsed;
    } else withUnits(field, text, path);
  }
}

/**
 * TypeBox reports a mismatch of a union as a whole ("Expected union value"); for the storage
 * union, re-check against the variant its `type` names so the message names the key at fault.
 */
function explainUnion(error: ValueError): ValueError[] {
  const variants = (error.schema as { anyOf?: TSchema[] }).anyOf;
  const type = (error.value as { type?: unknown } | null)?.type;
  if (!variants || typeof type !== 'string') return [error];
  const variant = variants.find(
    (v) => (v as { properties?: { type?: { const?: unknown } } }).properties?.type?.const === type,
  );
  if (!variant) return [{ ...error, message: `unknown type ${JSON.stringify(type)}` }];
  return [...Value.Errors(variant, Value.Default(variant, Value.Clone(error.value)))].map((e) => ({
    ...e,
    path: error.path + e.path,
  }));
}

/** Reads the config once, at the edge: file, then environment, then flags. */
export function loadConfig(sources: ConfigSources): Config {
  const env = sources.env ?? process.env;
  let raw: Record<string, unknown> = {};
  if (sources.file) {
    let text: string;
    try {
      text = readFileSync(sources.file, 'utf8');
    } catch (err) {
      throw new NarhubError('CONFIG_INVALID', `cannot read config file ${sources.file}: ${(err as Error).message}`);
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new NarhubError(
        'CONFIG_INVALID',
        `config file ${sources.file} is not valid JSON: ${(err as Error).message}`,
      );
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new NarhubError('CONFIG_INVALID', `config file ${sources.file} must hold a JSON object`);
    }
  }
  if (env.NARHUB_DATA_DIR && raw.dataDir === undefined) raw.dataDir = env.NARHUB_DATA_DIR;
  for (const [k, v] of Object.entries(sources.overrides ?? {})) if (v !== undefined) raw[k] = v;
  const warn = sources.warn ?? ((message: string) => process.stderr.write(`narhub: warning: ${message}\n`));
  const config = parseConfig(raw, warn);
  return Object.freeze({ ...config, dataDir: resolve(config.dataDir) });
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535)
    throw new NarhubError('CONFIG_INVALID', `invalid listen address ${JSON.stringify(listen)}: expected HOST:PORT`);
  return { host: (m[1] ?? m[2])!, port };
}
