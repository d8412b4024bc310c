import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../logger.js';
import type { BuildJobResult } from '../protocol/build-jobs.js';
import { runBuild, type BuildContext } from './build-runner.js';
import { createCacheHttp } from './cache-http.js';
import { BuildSlots } from './build-slots.js';
import { CancelListener } from './cancel.js';
import type { StopReason } from './failures.js';
import { Heartbeat } from './heartbeat.js';
import { createSpokeNixConfig } from './nix-config.js';
import type { SpokeOptions } from './options.js';
import { QueueSubscription, type BuildJob } from './queues.js';
import { ServePool } from './serve-pool.js';

/** How long closing may take once no build runs (reporting the last results, closing BullMQ). */
const CLOSE_GRACE_MS = 10_000;

export interface Spoke {
  readonly id: string;
  /** Queues being worked right now. */
  queues(): string[];
  /**
   * Stops taking jobs, lets running builds finish (and push), deletes the heartbeat and closes
   * every connection. Idempotent.
   */
  drain(): Promise<void>;
  /** Kills every running build's process tree at once (before a hard exit). */
  killBuilds(reason: StopReason): void;
}

/** Fails unless the Nix client is there: a spoke without it could only fail every job. */
function checkNix(): void {
  for (const cmd of ['nix-store', 'nix']) {
    const res = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
    if (res.error || res.status !== 0) {
      throw new Error(
        `cannot run ${cmd} --version (is Nix installed and on PATH?): ${res.error?.message ?? res.stderr.trim()}`,
      );
    }
  }
}

/**
 * A spoke: BullMQ workers on the queues it can serve, building each job with the stock Nix
 * client against narhub (see build-runner.ts), with heartbeats, live logs and cancellation.
 */
export async function startSpoke(opts: SpokeOptions, logger: Logger): Promise<Spoke> {
  checkNix();
  const log = logger.child({ component: 'spoke', spoke: opts.id });
  const nix = await createSpokeNixConfig({ store: opts.store, features: opts.features });

  // Three connections: BullMQ's (never gives up on a command, as Workers need), the spoke's own
  // for heartbeats, logs and discovery (fails fast, so Redis trouble never holds a build), and a
  // subscriber for cancellations.
  const connectionError = (name: string) => {
    let last = '';
    return (err: Error) => {
      if (err.message === last) return;
      last = err.message;
      log.warn({ connection: name, err: err.message }, 'redis connection error');
    };
  };
  const make = (name: string, extra: RedisOptions): Redis => {
    const r = new Redis(opts.redisUrl, { connectionName: `narhub-spoke-${opts.id}-${name}`, ...extra });
    r.on('error', connectionError(name));
    return r;
  };
  const bullConnection = make('bullmq', { maxRetriesPerRequest: null });
  const client = make('client', { maxRetriesPerRequest: 2, commandTimeout: 10_000 });
  const subscriber = make('cancel', { maxRetriesPerRequest: null });

  // One `nix-store --serve` per build slot, kept between jobs. Nix itself never talks to the
  // cache: the spoke fetches inputs and pushes outputs, so only build settings are passed.
  const serve = new ServePool({ store: opts.store, env: nix.env, args: nix.serveOptions() });
  const slots = new BuildSlots(opts.maxJobs);
  const running = new Map<string, AbortController>();
  // Builds of this spoke by derivation. Other spokes' builds are in their heartbeats, but a job
  // can also reach the spoke already building it (its job was lost with Redis' data and added
  // again): that one waits for the build here, then takes its outputs from the cache.
  const building = new Map<string, Promise<unknown>>();
  const heartbeat = new Heartbeat(
    client,
    {
      id: opts.id,
      systems: opts.systems,
      features: opts.features,
      maxJobs: opts.maxJobs,
      running: () => slots.running(),
    },
    log,
  );
  const http = createCacheHttp();
  const ctx: BuildContext = {
    spokeId: opts.id,
    hubUrl: opts.hubUrl,
    token: opts.token,
    http,
    nix,
    serve,
    redis: client,
    timeout: opts.timeout,
    maxSilent: opts.maxSilent,
    networkRetries: opts.networkRetries,
    pushRetryFor: opts.pushRetryFor,
    retryDelay: opts.retryDelay,
    logger: log,
  };

  const processJob = async (job: BuildJob, bullSignal: AbortSignal | undefined): Promise<BuildJobResult> => {
    const data = job.data;
    const jobLog = log.child({ jobId: job.id, drv: data?.drvPath });
    const controller = new AbortController();
    const key = data?.drvHash ?? String(job.id);
    running.set(key, controller);
    const onBullAbort = () =>
      controller.abort({
        kind: 'cancelled',
        message: `cancelled${bullSignal?.reason ? `: ${String(bullSignal.reason)}` : ''}`,
      } satisfies StopReason);
    if (bullSignal?.aborted) onBullAbort();
    else bullSignal?.addEventListener('abort', onBullAbort, { once: true });
    jobLog.info({ attempt: job.attemptsMade + 1, queue: job.queueName }, 'build started');
    heartbeat.soon();
    const earlier = building.get(key);
    const run = (async () => {
      if (earlier && !controller.signal.aborted) {
        jobLog.info('this spoke is building this derivation already: waiting for that build');
        await Promise.race([earlier, once(controller.signal, 'abort')]).catch(() => undefined);
      }
      return runBuild(data, ctx, controller.signal);
    })();
    building.set(key, run);
    try {
      const result = await run;
      jobLog.info(
        { outputs: result.outputs, seconds: (result.finishedAt - result.startedAt) / 1000 },
        'build succeeded',
      );
      return result;
    } catch (err) {
      jobLog.info(
        { reason: (err as Error).message, final: (err as Error).name === 'UnrecoverableError' },
        'build failed',
      );
      throw err;
    } finally {
      bullSignal?.removeEventListener('abort', onBullAbort);
      if (running.get(key) === controller) running.delete(key);
      if (building.get(key) === run) building.delete(key);
      // The slot is released right after this returns; the beat comes after that.
      heartbeat.soon();
    }
  };

  const subscription = new QueueSubscription({
    spokeId: opts.id,
    systems: opts.systems,
    features: opts.features,
    connection: bullConnection,
    client,
    slots,
    lockDuration: opts.lockDuration,
    stalledInterval: opts.stalledInterval,
    discoverInterval: opts.discoverInterval,
    process: processJob,
    logger: log,
  });

  const cancel = await CancelListener.start(
    subscriber,
    (drvHash) => {
      const controller = running.get(drvHash);
      if (!controller) return;
      log.info({ drvHash }, 'cancelling build on request');
      controller.abort({ kind: 'cancelled', message: 'cancelled on request' } satisfies StopReason);
    },
    log,
  );
  await heartbeat.start();
  await subscription.start();
  log.info(
    {
      systems: opts.systems,
      features: opts.features,
      maxJobs: opts.maxJobs,
      store: opts.store,
      hub: opts.hubUrl,
      queues: subscription.queues,
    },
    'spoke ready',
  );

  let draining: Promise<void> | undefined;
  return {
    id: opts.id,
    queues: () => subscription.queues,
    killBuilds(reason) {
      for (const controller of running.values()) controller.abort(reason);
      serve.killAll();
    },
    drain() {
      draining ??= (async () => {
        log.info({ running: slots.running() }, 'draining: taking no new jobs, finishing running builds');
        const errors: unknown[] = [];
        const step = async (name: string, fn: () => Promise<unknown>) => {
          try {
            await fn();
          } catch (err) {
            errors.push(err);
            log.error({ step: name, err: (err as Error).message }, 'error while draining');
          }
        };
        // Stop fetching now; the running builds finish (and push) on their own.
        const closing = subscription.close();
        await step('workers', async () => {
          await slots.whenIdle();
          // Once no build runs, BullMQ only has to report the last results and close. If Redis is
          // away that never ends (its commands wait for Redis): give up after a grace period.
          const closed = await Promise.race([closing.then(() => true), sleep(CLOSE_GRACE_MS).then(() => false)]);
          if (!closed) {
            log.warn('Redis does not answer: closing without it (the heartbeat expires by itself)');
            for (const r of [bullConnection, client, subscriber]) r.disconnect();
          }
        });
        await step('nix-store --serve', () => serve.close());
        http.close();
        await step('heartbeat', () => heartbeat.stop());
        await step('cancel', () => Promise.race([cancel.stop(), sleep(2_000)]));
        await step('redis', () =>
          Promise.all(
            [bullConnection, client, subscriber].map((r) =>
              r.status !== 'ready'
                ? r.disconnect()
                : Promise.race([r.quit(), sleep(2_000).then(() => Promise.reject(new Error('quit timed out')))]).catch(
                    () => r.disconnect(),
                  ),
            ),
          ),
        );
        await step('nix config', () => nix.dispose());
        log.info('spoke stopped');
        if (errors.length > 0) throw new AggregateError(errors, 'the spoke did not stop cleanly');
      })();
      return draining;
    },
  };
}
