import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { NarhubError } from '../errors.js';
import type { Hub } from '../hub/hub-service.js';
import type { Logger } from '../logger.js';
import type { Runtime } from './runtime.js';

/** The Redis URL of the hub: `hub.redisUrl`, else the contents of `hub.redisUrlFile`. */
function hubRedisUrl(config: Config): string | undefined {
  if (config.hub.redisUrl) return config.hub.redisUrl;
  if (!config.hub.redisUrlFile) return undefined;
  try {
    return readFileSync(config.hub.redisUrlFile, 'utf8').trim() || undefined;
  } catch (err) {
    throw new NarhubError(
      'CONFIG_INVALID',
      `cannot read hub.redisUrlFile ${config.hub.redisUrlFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

/** `serve --redis-url URL` turns the hub on. */
export function withRedisUrl(config: Config, redisUrl: string | undefined): Config {
  if (redisUrl === undefined) return config;
  if (!/^rediss?:\/\//.test(redisUrl))
    throw new NarhubError('CONFIG_INVALID', `--redis-url must be a redis:// or rediss:// URL`);
  return { ...config, hub: { ...config.hub, enable: true, redisUrl } };
}

/**
 * The hub, when the config enables it (it needs a Redis URL); undefined: serve the cache alone.
 * The hub and BullMQ/ioredis are loaded only then.
 */
export async function openHub(config: Config, runtime: Runtime, logger: Logger): Promise<Hub | undefined> {
  const redisUrl = hubRedisUrl(config);
  if (!config.hub.enable) return undefined;
  if (!redisUrl)
    throw new NarhubError('CONFIG_INVALID', 'hub.enable needs hub.redisUrl, hub.redisUrlFile or --redis-url');
  const { createHub } = await import('../hub/hub-service.js');
  return createHub({
    db: runtime.db,
    cache: runtime.service,
    config: config.hub,
    redisUrl,
    maxNarSize: config.maxNarSize,
    logger,
  });
}
