import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { NarhubError } from '../errors.js';

export interface NetrcEntry {
  /** Undefined for the `default` entry. */
  machine: string | undefined;
  login: string | undefined;
  password: string | undefined;
}

/**
 * Parses a netrc file: whitespace-separated tokens, `machine NAME` or `default` starting an
 * entry followed by `login`, `password` and `account` pairs; `macdef` bodies (up to a blank
 * line) are skipped. Comments start with `#`.
 */
export function parseNetrc(text: string): NetrcEntry[] {
  const entries: NetrcEntry[] = [];
  const lines = text.split('\n');
  const tokens: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/#.*$/, '');
    const words = line.split(/\s+/).filter((w) => w !== '');
    const macdef = words.indexOf('macdef');
    if (macdef >= 0) {
      tokens.push(...words.slice(0, macdef));
      while (i + 1 < lines.length && lines[i + 1]!.trim() !== '') i++;
      continue;
    }
    tokens.push(...words);
  }
  let current: NetrcEntry | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token === 'machine') {
      current = { machine: tokens[++i], login: undefined, password: undefined };
      entries.push(current);
    } else if (token === 'default') {
      current = { machine: undefined, login: undefined, password: undefined };
      entries.push(current);
    } else if (current && (token === 'login' || token === 'password' || token === 'account')) {
      const value = tokens[++i];
      if (token === 'login') current.login = value;
      if (token === 'password') current.password = value;
    }
  }
  return entries;
}

/** The netrc files Nix itself would read, in order of preference. */
export function defaultNetrcFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env.NIX_CONF_DIR) files.push(join(env.NIX_CONF_DIR, 'netrc'));
  files.push(join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'nix', 'netrc'));
  files.push('/etc/nix/netrc');
  return [...new Set(files)];
}

/**
 * The credentials for `host` from the first of `files` that has them (an entry for the host,
 * else a `default` entry). A file given explicitly (`required`) must be readable.
 */
export function netrcCredentials(
  host: string,
  files: string[],
  required = false,
): { login: string; password: string; file: string } | undefined {
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if (required)
        throw new NarhubError(
          'BAD_REQUEST',
          `cannot read netrc file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        );
      continue;
    }
    const entries = parseNetrc(text);
    const entry = entries.find((e) => e.machine === host) ?? entries.find((e) => e.machine === undefined);
    if (entry?.password !== undefined) return { login: entry.login ?? 'narhub', password: entry.password, file };
  }
  return undefined;
}
