import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createLogger } from '../../logger.js';
import { SPOKE_DEFAULTS, type SpokeOptions } from '../../spoke/options.js';
import { startSpoke } from '../../spoke/spoke.js';
import { parseDurationFlag, parseInteger } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { SPOKE } from '../specs/spoke.js';
import { UsageError } from '../usage-error.js';

const SYSTEM_RE = /^[A-Za-z0-9_.-]+-[A-Za-z0-9_.-]+$/;
const FEATURE_RE = /^[A-Za-z0-9_.-]+$/;
const ID_RE = /^[A-Za-z0-9_.@-]{1,100}$/;

function list(text: string | undefined, flag: string, re: RegExp): string[] {
  if (text === undefined || text.trim() === '') return [];
  const items = [
    ...new Set(
      text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    ),
  ];
  for (const item of items) if (!re.test(item)) throw new UsageError(`${flag}: invalid name ${JSON.stringify(item)}`);
  return items;
}

function url(text: string | undefined, flag: string, protocols: string[]): string {
  if (!text) throw new UsageError(`missing ${flag}`);
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw new UsageError(`${flag}: invalid URL ${JSON.stringify(text)}`);
  }
  if (!protocols.includes(parsed.protocol))
    throw new UsageError(`${flag}: expected a ${protocols.join(' or ')} URL, got ${JSON.stringify(text)}`);
  return text.replace(/\/+$/, '');
}

function whole(text: string | undefined, flag: string, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = parseInteger(text, flag);
  if (n < min) throw new UsageError(`${flag} must be at least ${min}`);
  return n;
}

/** Parses `narhub spoke` flags (and $NARHUB_TOKEN, $NARHUB_REDIS_URL) into SpokeOptions. */
export function parseSpokeArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): SpokeOptions {
  const { values } = parseCommand(SPOKE, argv);
  const hubUrl = url(values.hub, '--hub', ['http:', 'https:']);
  const redisUrl = url(values['redis-url'] ?? env.NARHUB_REDIS_URL, '--redis-url', ['redis:', 'rediss:']);

  if (values.token !== undefined && values['token-file'] !== undefined)
    throw new UsageError('give --token or --token-file, not both');
  let token: string | undefined;
  if (values['token-file'] !== undefined) {
    try {
      token = readFileSync(values['token-file'], 'utf8').trim();
    } catch (err) {
      throw new UsageError(`--token-file: ${(err as Error).message}`);
    }
  } else {
    token = values.token ?? env.NARHUB_TOKEN;
  }
  if (!token)
    throw new UsageError('missing --token-file (or --token, or $NARHUB_TOKEN): the spoke pushes outputs with it');
  if (/\s/.test(token)) throw new UsageError('the token must not contain white space');

  const systems = list(values.systems, '--systems', SYSTEM_RE);
  if (systems.length === 0) throw new UsageError('missing --systems (e.g. --systems x86_64-linux)');
  const features = list(values.features, '--features', FEATURE_RE);
  const id = values.id ?? hostname();
  if (!ID_RE.test(id)) throw new UsageError(`--id: invalid name ${JSON.stringify(id)} (letters, digits, . _ @ -)`);
  const store = values.store ?? SPOKE_DEFAULTS.store;
  if (store === '') throw new UsageError('--store must not be empty');

  return {
    id,
    hubUrl,
    token,
    redisUrl,
    systems,
    features,
    maxJobs: whole(values['max-jobs'], '--max-jobs', SPOKE_DEFAULTS.maxJobs, 1),
    store,
    timeout: values.timeout === undefined ? SPOKE_DEFAULTS.timeout : parseDurationFlag(values.timeout, '--timeout'),
    maxSilent:
      values['max-silent'] === undefined
        ? SPOKE_DEFAULTS.maxSilent
        : parseDurationFlag(values['max-silent'], '--max-silent'),
    lockDuration: whole(values['lock-duration'], '--lock-duration', SPOKE_DEFAULTS.lockDuration, 1000),
    stalledInterval: whole(values['stalled-interval'], '--stalled-interval', SPOKE_DEFAULTS.stalledInterval, 100),
    discoverInterval: whole(values['discover-interval'], '--discover-interval', SPOKE_DEFAULTS.discoverInterval, 100),
    retryDelay: whole(values['retry-delay'], '--retry-delay', SPOKE_DEFAULTS.retryDelay, 0),
    networkRetries: whole(values['network-retries'], '--network-retries', SPOKE_DEFAULTS.networkRetries, 0),
    pushRetryFor:
      values['push-retry-for'] === undefined
        ? SPOKE_DEFAULTS.pushRetryFor
        : parseDurationFlag(values['push-retry-for'], '--push-retry-for'),
  };
}

/**
 * `narhub spoke`: builds jobs from the hub's queues until SIGTERM or SIGINT, which drains
 * (no new jobs, running builds finish and push, heartbeat deleted, exit 0). A second signal
 * kills the running builds' process trees and exits at once (their jobs go to other spokes as
 * stalled jobs).
 */
export async function spokeCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const opts = parseSpokeArgs(argv, env);
  const logger = createLogger((env.NARHUB_LOG_LEVEL as 'info' | undefined) ?? 'info');
  const spoke = await startSpoke(opts, logger);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: killing running builds and exiting now');
        spoke.killBuilds({ kind: 'infrastructure', message: 'the spoke was stopped' });
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down: finishing running builds');
      const done = (code: number) => {
        // Exit even if some library left a handle open; the drain is complete.
        setTimeout(() => process.exit(code), 2_000).unref();
        resolve(code);
      };
      spoke.drain().then(
        () => done(0),
        () => done(1),
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
