import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import type { Forge } from '../forge/forge-service.js';
import type { Hub } from '../hub/hub-service.js';
import type { Logger } from '../logger.js';
import type { Runtime } from './runtime.js';

/**
 * The CI's forge side (webhooks, polling, approvals, checks), with the hub: loaded only then.
 * `publicUrl` is read when a link is made, since the address is known only once the server listens.
 */
export async function openForge(
  config: Config,
  runtime: Runtime,
  hub: Hub,
  logger: Logger,
  publicUrl: () => string,
): Promise<Forge> {
  const { createForge } = await import('../forge/forge-service.js');
  return createForge({
    db: runtime.db,
    hub,
    github: config.github,
    publicUrl,
    logger,
    keysDir: join(config.dataDir, 'keys'),
  });
}
