import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildApp } from '../../http/app.js';
import { parseListen } from '../../config/load.js';
import { createLogger } from '../../logger.js';
import type { Config } from '../../config/schema.js';
import { openRuntime, type Runtime } from '../runtime.js';

/**
 * First start on an empty data directory: a public cache `main` (unless the config declares
 * its own), its key, and an admin token shown once and kept in `<data-dir>/admin-token` (0600).
 */
async function bootstrap(runtime: Runtime, baseUrl: string, out: NodeJS.WritableStream): Promise<void> {
  const { service, config } = runtime;
  if (service.registry.list().length > 0 || service.tokens.list().length > 0) return;
  const lines: string[] = ['narhub: first start, data directory ' + config.dataDir];
  if (config.caches.length === 0) {
    const { cache, publicKey } = await service.registry.create('main', { private: false, priority: 40 });
    lines.push(`  cache:        ${cache.name} (public)`, `  substituter:  ${baseUrl}/${cache.name}`, `  public key:   ${publicKey}`);
  }
  const { token } = service.tokens.create({ cachePattern: '*', permission: 'admin', name: 'bootstrap admin' });
  const tokenFile = join(config.dataDir, 'admin-token');
  writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
  lines.push(`  admin token:  ${token}`, `                (also in ${tokenFile}; it is not shown again)`);
  out.write(lines.join('\n') + '\n');
}

async function ensureDeclaredCaches(runtime: Runtime): Promise<void> {
  for (const decl of runtime.config.caches) {
    await runtime.service.registry.ensure(decl.name, { private: decl.private, priority: decl.priority, signingKeyFile: decl.signingKeyFile });
  }
}

/** `narhub serve`: the binary cache over HTTP until SIGTERM or SIGINT, then a clean drain. */
export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  const { host, port } = parseListen(config.listen);
  const runtime = openRuntime(config);
  await ensureDeclaredCaches(runtime);

  const app = await buildApp({
    service: runtime.service,
    logger,
    maxNarSize: config.maxNarSize,
    maxSmallFileSize: config.maxSmallFileSize,
  });
  const address = await app.listen({ host, port });
  const baseUrl = config.publicUrl?.replace(/\/+$/, '') ?? address;
  await bootstrap(runtime, baseUrl, process.stdout);
  logger.info({ url: address, dataDir: config.dataDir, storage: runtime.store.kind }, 'listening');

  const sweep = async () => {
    try {
      const { removed } = await runtime.service.sweepPending(config.pendingGracePeriod * 1000);
      if (removed > 0) logger.info({ removed }, 'removed unclaimed NAR uploads');
    } catch (err) {
      logger.error({ err }, 'sweep of unclaimed uploads failed');
    }
  };
  const sweeper = setInterval(() => void sweep(), config.gcInterval * 1000);
  sweeper.unref();
  void sweep();

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal, exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down: draining requests');
      clearInterval(sweeper);
      app
        .close()
        .then(() => runtime.close())
        .then(() => logger.info('stopped'))
        .catch((err: unknown) => {
          logger.error({ err }, 'error during shutdown');
          process.exitCode = 1;
        })
        .finally(resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
