import { NarhubError } from '../errors.js';
import { NIX32_ALPHABET } from './nix32.js';
import { quote } from './quote.js';

export const DEFAULT_STORE_DIR = '/nix/store';

/** A store path split into its parts; `basename` is `<hashPart>-<name>`. */
export interface StorePath {
  hashPart: string;
  name: string;
  basename: string;
}

const HASH_PART_LENGTH = 32;
const MAX_NAME_LENGTH = 211;
const HASH_PART_RE = new RegExp(`^[${NIX32_ALPHABET}]{${HASH_PART_LENGTH}}$`);
const NAME_CHARS_RE = /^[A-Za-z0-9+\-._?=]+$/;

export function isValidHashPart(text: string): boolean {
  return HASH_PART_RE.test(text);
}

/**
 * Why `name` is not a valid store path name, or `undefined` if it is (Nix 2.19+ rules,
 * docs/protocol.md, Store paths).
 */
function storePathNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'name is empty';
  if (name.length > MAX_NAME_LENGTH) return `name is ${name.length} characters, longer than ${MAX_NAME_LENGTH}`;
  if (!NAME_CHARS_RE.test(name)) {
    const bad = [...name].find((c) => !NAME_CHARS_RE.test(c)) ?? '';
    return `name contains illegal character ${quote(bad)} (allowed: A-Z a-z 0-9 + - . _ ? =)`;
  }
  // Nix ≥ 2.19 refuses these; they would be confusing or dangerous as directory names.
  if (name === '.' || name === '..') return `name must not be ${quote(name)}`;
  if (name.startsWith('.-') || name.startsWith('..-')) return 'name must not start with ".-" or "..-"';
  return undefined;
}

export function isValidStorePathName(name: string): boolean {
  return storePathNameProblem(name) === undefined;
}

/** Splits a basename, or explains why it is not one. */
function splitBasename(basename: string): StorePath | string {
  if (basename.length < HASH_PART_LENGTH + 2) {
    return `too short (need ${HASH_PART_LENGTH} hash characters, "-" and a name)`;
  }
  const hashPart = basename.slice(0, HASH_PART_LENGTH);
  if (!isValidHashPart(hashPart)) {
    return `hash part ${quote(hashPart)} is not ${HASH_PART_LENGTH} nix32 characters`;
  }
  // Nix <= 2.35 does not check this separator, but master does and every real path has it.
  if (basename[HASH_PART_LENGTH] !== '-') return 'expected "-" after the hash part';
  const name = basename.slice(HASH_PART_LENGTH + 1);
  return storePathNameProblem(name) ?? { hashPart, name, basename };
}

export function parseStorePathBasename(basename: string): StorePath {
  const result = splitBasename(basename);
  if (typeof result === 'string') {
    throw new NarhubError('STORE_PATH_INVALID', `invalid store path basename ${quote(basename)}: ${result}`);
  }
  return result;
}

/** Parses `<storeDir>/<basename>`; anything not directly inside `storeDir` is rejected. */
export function parseStorePath(fullPath: string, storeDir = DEFAULT_STORE_DIR): StorePath {
  const prefix = `${storeDir}/`;
  const result = fullPath.startsWith(prefix)
    ? splitBasename(fullPath.slice(prefix.length))
    : `not directly inside the store directory ${storeDir}`;
  if (typeof result === 'string') {
    throw new NarhubError('STORE_PATH_INVALID', `invalid store path ${quote(fullPath)}: ${result}`);
  }
  return result;
}

export function isDerivationPath(p: StorePath): boolean {
  return p.name.endsWith('.drv');
}

export function formatStorePath(p: StorePath, storeDir = DEFAULT_STORE_DIR): string {
  return `${storeDir}/${p.basename}`;
}
