import { isNarhubError } from '../errors.js';
import { parseCacheUrl, type CacheLocation } from '../push/cache-url.js';
import { createPathFilter, type PathFilter } from '../push/path-filter.js';
import { parseDurationFlag, parseInteger } from './args.js';
import { pushAuthorization } from './push-auth.js';
import { UsageError } from './usage-error.js';
import { parseSize, SIZE_SYNTAX } from '../units.js';

/** The values of the flags push-daemon and watch-store share (`DAEMON_FLAGS` of specs/auto-push.ts). */
export interface DaemonFlagValues {
  jobs?: string | undefined;
  retries?: string | undefined;
  token?: string | undefined;
  'token-file'?: string | undefined;
  netrc?: string | undefined;
  include?: string[] | undefined;
  exclude?: string[] | undefined;
  'only-built-here'?: boolean | undefined;
  'max-backoff'?: string | undefined;
  'max-size'?: string | undefined;
  'upload-upstream-paths'?: boolean | undefined;
}

export interface DaemonSettings {
  location: CacheLocation;
  authorization: string | undefined;
  jobs: number;
  retries: number;
  filter: PathFilter;
  maxBackoffMs: number;
  uploadUpstreamPaths: boolean;
}

function bounded(text: string | undefined, flag: string, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = parseInteger(text, flag);
  if (n < min || n > max) throw new UsageError(`${flag} must be between ${min} and ${max}`);
  return n;
}

/** Seconds from a duration flag that must be at least a second and at most a day. */
export function positiveDuration(text: string, flag: string): number {
  const seconds = parseDurationFlag(text, flag);
  if (seconds < 1 || seconds > 86_400) throw new UsageError(`${flag} must be between 1s and 1d`);
  return seconds;
}

function sizeFlag(text: string, flag: string): number {
  const bytes = parseSize(text);
  if (bytes === undefined || bytes < 1) throw new UsageError(`${flag} must be ${SIZE_SYNTAX}, at least 1`);
  return bytes;
}

/** Checks the shared flags and reads the token (once) for a daemon pushing to `cacheUrl`. */
export function daemonSettings(
  cacheUrl: string,
  values: DaemonFlagValues,
  env: NodeJS.ProcessEnv = process.env,
): DaemonSettings {
  let location: CacheLocation;
  let filter: PathFilter;
  try {
    location = parseCacheUrl(cacheUrl);
    filter = createPathFilter({
      include: values.include,
      exclude: values.exclude,
      onlyBuiltHere: values['only-built-here'] === true,
      maxNarSize: values['max-size'] === undefined ? undefined : sizeFlag(values['max-size'], '--max-size'),
    });
  } catch (e) {
    throw new UsageError(isNarhubError(e) ? e.message : String(e));
  }
  return {
    location,
    authorization: pushAuthorization(values, location.host, env),
    jobs: bounded(values.jobs, '--jobs', 4, 1, 64),
    retries: bounded(values.retries, '--retries', 4, 0, 20),
    filter,
    maxBackoffMs:
      (values['max-backoff'] === undefined ? 300 : positiveDuration(values['max-backoff'], '--max-backoff')) * 1000,
    uploadUpstreamPaths: values['upload-upstream-paths'] === true,
  };
}
