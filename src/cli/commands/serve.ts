import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { buildApp, metricsRegistryOf } from '../../http/app.js';
import { parseListen } from '../../config/load.js';
import { createLogger, type Logger } from '../../logger.js';
import type { Config } from '../../config/schema.js';
import { openRuntime, type Runtime } from '../runtime.js';
import { holdServeLease } from '../serve-lease.js';
import { openForge } from '../forge-runtime.js';
import { openHub } from '../hub-runtime.js';
import { missingNodeFlags } from '../node-flags.js';

/**
 * First start on an empty data directory: a public cache `main` (unless the config declares
 * its own), its key, and an admin token shown once and kept in `<data-dir>/admin-token` (0600).
 */
async function bootstrap(runtime: Runtime, baseUrl: string, out: NodeJS.WritableStream): Promise<void> {
  const { service, config } = runtime;
  if (service.registry.list().length > 0 || service.tokens.list().length > 0) return;
  const lines: string[] = [`narhub: first start, data directory ${config.dataDir}`];
  if (config.caches.length === 0) {
    const { cache, publicKey } = await service.registry.create('main', { private: false, priority: 40 });
    lines.push(
      `  cache:        ${cache.name} (public)`,
      `  substituter:  ${baseUrl}/${cache.name}`,
      `  public key:   ${publicKey}`,
    );
  }
  const { token } = service.tokens.create({ cachePattern: '*', permission: 'admin', name: 'bootstrap admin' });
  const tokenFile = join(config.dataDir, 'admin-token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  lines.push(`  admin token:  ${token}`, `                (also in ${tokenFile}; it is not shown again)`);
  out.write(`${lines.join('\n')}\n`);
}

async function ensureDeclaredCaches(runtime: Runtime): Promise<void> {
  for (const decl of runtime.config.caches) {
    const { cache } = await runtime.service.registry.ensure(decl.name, decl);
    runtime.service.upstreams.declare(cache, decl.upstreams);
  }
}

/**
 * Under systemd with Type=notify (NOTIFY_SOCKET set): tells it the service is ready. Node cannot
 * write to a Unix datagram socket, so systemd-notify does (the unit allows it, NotifyAccess=all),
 * and it waits until systemd has taken the message. The variable is then removed, so that the
 * processes narhub starts (nix, git) cannot speak for the service.
 */
function notifyReady(logger: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  const child = spawn('systemd-notify', ['--ready'], { stdio: 'ignore' });
  delete process.env.NOTIFY_SOCKET;
  child.on('error', (err) => logger.warn({ err }, 'NOTIFY_SOCKET is set, but systemd-notify could not run'));
  child.on('exit', (code) => {
    if (code !== 0) logger.warn({ code }, 'systemd-notify --ready failed');
  });
}

/** `narhub serve`: the binary cache over HTTP until SIGTERM or SIGINT, then a clean drain. */
export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  const { host, port } = parseListen(config.listen);
  const runtime = await openRuntime(config);
  await ensureDeclaredCaches(runtime);
  // The build hub (when enabled) serves its API from this app and uploads through it.
  const hub = await openHub(config, runtime, logger);
  let baseUrl = config.publicUrl?.replace(/\/+$/, '') ?? `http://${config.listen}`;
  const forge = hub && (await openForge(config, runtime, hub, logger, () => baseUrl));

  const app = await buildApp({
    service: runtime.service,
    logger,
    maxNarSize: config.maxNarSize,
    maxSmallFileSize: config.maxSmallFileSize,
    hub,
    forge,
    publicUrl: () => baseUrl,
    logRequests: config.logRequests,
    limits: config.limits,
    gc: {
      pendingGraceMs: config.gc.pendingGracePeriod * 1000,
      supersededGraceMs: config.gc.supersededGracePeriod * 1000,
    },
    hubStats: hub ? () => hub.stats() : undefined,
  });
  const address = await app.listen({ host, port });
  // A GC another process runs on this data directory refuses while this lease stands (serve-lease.ts).
  const releaseLease = holdServeLease(runtime.db, address);
  const metricsServer = config.metricsListen === undefined ? undefined : await listenMetrics(app, config.metricsListen);
  if (metricsServer) logger.info({ url: metricsServer.url }, 'metrics listening');
  baseUrl = config.publicUrl?.replace(/\/+$/, '') ?? address;
  await bootstrap(runtime, baseUrl, process.stdout);
  if (hub) {
    try {
      await hub.start();
      forge?.start();
    } catch (err) {
      await forge?.close();
      await app.close();
      await hub.close();
      await runtime.close();
      throw err;
    }
  }
  logger.info({ url: address, dataDir: config.dataDir, storage: runtime.store.kind }, 'listening');
  notifyReady(logger);
  const missingFlags = missingNodeFlags();
  if (missingFlags.length > 0) {
    logger.warn(
      { missing: missingFlags },
      `node was started without ${missingFlags.join(' ')}: full garbage collections will pause requests ` +
        'during uploads (npm start and the Nix package pass it)',
    );
  }
  const redirecting = runtime.service.registry
    .list()
    .filter((c) => c.redirectNars)
    .map((c) => c.name);
  if (redirecting.length > 0 && runtime.store.presignGet === undefined) {
    logger.warn(
      { caches: redirecting, storage: runtime.store.kind },
      'redirectNars needs storage that can presign URLs (S3); serving NARs directly',
    );
  }

  // GC (config gc.interval, default hourly): unclaimed uploads and superseded files everywhere,
  // then every cache by its retention, quota and pins, with orphans and logs.
  let collecting = false;
  const sweep = async () => {
    if (collecting) return;
    collecting = true;
    try {
      const run = await runtime.service.runGc({
        pendingGraceMs: config.gc.pendingGracePeriod * 1000,
        supersededGraceMs: config.gc.supersededGracePeriod * 1000,
      });
      for (const c of run.caches) {
        if (c.pathsRemoved > 0 || c.orphansRemoved > 0 || c.logsRemoved > 0)
          logger.info(
            {
              cache: c.cache,
              paths: c.pathsRemoved,
              bytes: c.bytesFreed,
              logs: c.logsRemoved,
              orphans: c.orphansRemoved,
              kept: c.kept,
            },
            'garbage collected',
          );
      }
      if (run.pendingRemoved > 0 || run.supersededRemoved > 0)
        logger.info(
          { pending: run.pendingRemoved, superseded: run.supersededRemoved },
          'removed unclaimed and superseded NAR files',
        );
      if (run.staleUploadsAborted > 0)
        logger.info({ uploads: run.staleUploadsAborted }, 'aborted multipart uploads left by puts that did not finish');
    } catch (err) {
      logger.error({ err }, 'garbage collection failed');
    } finally {
      collecting = false;
    }
    try {
      const removed = runtime.service.pullThrough.sweepOffers();
      if (removed > 0) logger.info({ removed }, 'forgot upstream narinfos whose NAR nobody fetched');
    } catch (err) {
      logger.error({ err }, 'sweep of upstream offers failed');
    }
  };
  const sweeper = setInterval(() => void sweep(), config.gc.interval * 1000);
  sweeper.unref();
  void sweep();
  // xz/bzip2 NARs of caches with recompressToZstd, one at a time in the background.
  runtime.service.recompressor.start(logger);
  // Re-signing after `key rotate`/`import` and signature removal after `key retire`, from any process.
  runtime.service.signatureRewriter.start(logger);
  runtime.service.pullThrough.setLogger(logger);

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
      metricsServer?.server.close();
      app
        .close()
        .then(() => forge?.close())
        .then(() => hub?.close())
        .then(() => runtime.service.recompressor.stop())
        .then(() => runtime.service.signatureRewriter.stop())
        .then(() => runtime.service.flushAccesses())
        .then(() => releaseLease())
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

/** `metricsListen`: a listener that serves GET /metrics only, for a scraper on another interface. */
async function listenMetrics(
  app: Parameters<typeof metricsRegistryOf>[0],
  listen: string,
): Promise<{ server: ReturnType<typeof createServer>; url: string }> {
  const registry = metricsRegistryOf(app);
  const { host, port } = parseListen(listen);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('NOT_FOUND: this listener serves GET /metrics only\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, () => resolve()));
  const a = server.address() as { address: string; port: number };
  return { server, url: `http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` };
}
