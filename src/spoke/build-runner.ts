import { basename, join } from 'node:path';
import { UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { inputPathsOf, outputPathsOf, parseDerivation, type Derivation } from '../nix/derivation.js';
import { buildVerdict, BuildStatus } from '../nix/serve-protocol.js';
import { isDerivationPath, parseStorePath } from '../nix/store-path.js';
import { textStorePath } from '../nix/text-path.js';
import { checkBuildJobData, type BuildJobData, type BuildJobResult } from '../protocol/build-jobs.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { BuildLog } from './build-log.js';
import { outputsInCache, waitForOtherBuilder } from './built-elsewhere.js';
import { CacheFetchError, createCacheClient, type CacheClient } from './cache-client.js';
import { okStatus, type CacheHttp } from './cache-http.js';
import { importInputs } from './import-inputs.js';
import { jobFailure, stripAnsi, type StopReason } from './failures.js';
import type { SpokeNixConfig } from './nix-config.js';
import { effectiveLimit } from './options.js';
import { PushError, pushOutputs, uploadLog } from './push.js';
import { type RetryInfo, withRetries } from '../io/retry.js';
import type { ServeConnection } from './serve-connection.js';
import type { ServePool } from './serve-pool.js';

/** Everything a build needs from its spoke. */
export interface BuildContext {
  spokeId: string;
  hubUrl: string;
  token: string;
  /** Keep-alive connections to the cache, shared by the spoke's jobs. */
  http: CacheHttp;
  nix: SpokeNixConfig;
  /** The spoke's `nix-store --serve` processes, one per build slot. */
  serve: ServePool;
  /** For the live log stream (not a BullMQ connection). */
  redis: Redis;
  /** Spoke defaults (seconds, 0 = none) for jobs that set no limit. */
  timeout: number;
  maxSilent: number;
  networkRetries: number;
  retryDelay: number;
  /** Seconds a successful build's outputs are offered to an unreachable cache before the job fails. */
  pushRetryFor: number;
  logger: Logger;
}

/** The spoke's own watchdog fires this long after the limit Nix enforces itself. */
const WATCHDOG_GRACE_SECONDS = 30;

/**
 * Checks what the hub sent; a job no spoke can make sense of fails at once. Returns the
 * derivation when the job carries its text (checked against its path).
 */
function checkJob(data: BuildJobData): Derivation | undefined {
  if (typeof data !== 'object' || data === null) throw new UnrecoverableError('infrastructure: job has no data');
  if (data.protocol !== PROTOCOL_VERSION) {
    // Another spoke (of the hub's version) may take it: retryable.
    throw jobFailure(
      'infrastructure',
      `job speaks protocol ${String(data.protocol)}, this spoke speaks ${PROTOCOL_VERSION}`,
    );
  }
  const bad = (why: string) => jobFailure('infrastructure', `invalid job: ${why}`, { retry: false });
  // The shape, by the schema the hub checked before it enqueued; then what a schema cannot say.
  const invalid = checkBuildJobData(data);
  if (invalid) throw bad(invalid);
  let drv;
  try {
    drv = parseStorePath(data.drvPath);
  } catch (err) {
    throw bad((err as Error).message);
  }
  if (!isDerivationPath(drv)) throw bad(`${data.drvPath} is not a derivation`);
  if (data.drvHash !== drv.hashPart) throw bad(`drvHash ${String(data.drvHash)} does not match ${data.drvPath}`);
  for (const [name, path] of Object.entries(data.outputs)) {
    try {
      parseStorePath(path);
    } catch {
      throw bad(`output ${name} is not a store path`);
    }
  }
  let carried: Derivation | undefined;
  if (data.drvText !== undefined) {
    try {
      carried = parseDerivation(data.drvText);
    } catch (err) {
      throw bad(`drvText: ${(err as Error).message}`);
    }
    const references = [...Object.keys(carried.inputDrvs), ...carried.inputSrcs];
    if (textStorePath(drv.name, data.drvText, references) !== data.drvPath)
      throw bad(`drvText is not the text of ${data.drvPath}`);
  }
  if (data.inputOutputs !== undefined) {
    for (const [drvPath, outputs] of Object.entries(data.inputOutputs)) {
      try {
        if (!isDerivationPath(parseStorePath(drvPath))) throw new Error('not a .drv');
        for (const path of Object.values(outputs)) parseStorePath(path);
      } catch {
        throw bad(`inputOutputs of ${drvPath} are not store paths`);
      }
    }
  }
  return carried;
}

/**
 * Builds one job through a `nix-store --serve` connection (no Nix process is started per job):
 * the `.drv` (from the job, else the cache) and the input `.drv`s whose outputs the job does
 * not name (from the cache) are parsed here; the inputs the store lacks (and what they need)
 * are fetched from the cache, signature-checked, and added; the
 * derivation is built with its log streamed live; its outputs are pushed to the cache with the
 * native upload, their NARs read from the same connection; the log is stored in the cache.
 * Throws `jobFailure(kind, …)` errors only; `signal` stops the build (its reason, a StopReason,
 * says why).
 */
export async function runBuild(data: BuildJobData, ctx: BuildContext, signal: AbortSignal): Promise<BuildJobResult> {
  const carried = checkJob(data);
  const startedAt = Date.now();
  const log = ctx.logger.child({ drv: data.drvPath });
  // Where the job's time went, logged at the end: ms per step.
  const phases: Record<string, number> = {};
  let mark = startedAt;
  const phase = (name: string) => {
    const now = Date.now();
    phases[name] = now - mark;
    mark = now;
  };
  const cacheUrl = `${ctx.hubUrl}/${data.cacheName}`;
  const retry = {
    retries: ctx.networkRetries,
    baseMs: ctx.retryDelay,
    signal,
    retryable: (err: unknown) => (err instanceof PushError || err instanceof CacheFetchError ? err.retryable : true),
  };
  const onRetry = ({ error, attempt, delayMs }: RetryInfo) =>
    log.warn({ err: (error as Error).message, attempt, delayMs }, 'network step failed, retrying');
  const stopped = (): never => {
    const reason = signal.reason as StopReason | undefined;
    throw jobFailure(reason?.kind ?? 'cancelled', reason?.message ?? 'build was stopped');
  };
  const infrastructure = (err: unknown): never => {
    if (signal.aborted) stopped();
    throw jobFailure('infrastructure', (err as Error).message);
  };

  // 1. The derivation and its inputs' derivations, from the cache.
  let cache: CacheClient;
  let drv: Derivation;
  let inputs: string[];
  try {
    cache = createCacheClient(cacheUrl, ctx.token, data.trustedPublicKeys, ctx.http);
    [drv, inputs] = await withRetries(
      async () => {
        const d = carried ?? (await cache.derivation(data.drvPath, signal));
        // Input outputs the hub sent are taken as they are; the other inputs' .drvs are fetched.
        const known = new Map(
          Object.entries(d.inputDrvs).flatMap(([p, names]) => {
            const outputs = data.inputOutputs?.[p];
            return outputs && names.every((n) => typeof outputs[n] === 'string') ? [[p, outputs] as const] : [];
          }),
        );
        const fetched = await Promise.all(
          Object.keys(d.inputDrvs)
            .filter((p) => !known.has(p))
            .map(async (p) => [p, outputPathsOf(await cache.derivation(p, signal))] as const),
        );
        for (const [p, outputs] of fetched) known.set(p, outputs);
        return [d, inputPathsOf(d, (p) => known.get(p)!)] as const;
      },
      retry,
      onRetry,
    );
  } catch (err) {
    return infrastructure(err);
  }
  const outputs = outputPaths(data, drv);
  phase('drvMs');

  // 1b. Built once only. A job may reach this spoke while another still builds its derivation
  // (that spoke lost its BullMQ lock) or after one built and pushed it (its result was lost):
  // wait for the other build, and take outputs the cache has instead of building them again.
  let reusedFrom: string | undefined;
  try {
    reusedFrom = await waitForOtherBuilder(ctx.redis, ctx.spokeId, data.drvHash, signal, (spoke) =>
      log.info({ spoke }, 'another spoke is building this derivation: waiting for its outputs'),
    );
    if (signal.aborted) stopped();
    if (await withRetries(() => outputsInCache(cache, outputs, signal), retry, onRetry)) {
      log.info({ builtBy: reusedFrom ?? null }, 'the outputs are in the cache already: not building them again');
      const logName = basename(data.drvPath);
      const hasLog = await logToStore(ctx.http, data, false, Buffer.alloc(0), cacheUrl, ctx.token);
      return {
        protocol: PROTOCOL_VERSION,
        spoke: reusedFrom ?? ctx.spokeId,
        attempt: data.attempt,
        outputs,
        startedAt,
        finishedAt: Date.now(),
        logPath: hasLog === 'kept' ? `log/${logName}` : null,
      };
    }
  } catch (err) {
    return infrastructure(err);
  }

  let conn: ServeConnection;
  try {
    conn = await ctx.serve.acquire();
  } catch (err) {
    return infrastructure(err);
  }
  const onAbort = () => conn.kill();
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });

  const timeout = effectiveLimit(data.timeout, ctx.timeout);
  const maxSilent = effectiveLimit(data.maxSilent, ctx.maxSilent);
  const buildLog = await BuildLog.open(
    ctx.redis,
    data.drvHash,
    join(ctx.nix.dir, `${data.drvHash}-${startedAt}.log`),
    (err) => log.warn({ err: (err as Error).message }, 'cannot write the live log to Redis'),
  );
  conn.onStderr((text) => buildLog.write(text));
  let logPath: string | null = null;
  let failure: Error | undefined;
  let built = false;
  try {
    // 2. Inputs the store lacks, from the cache.
    try {
      // Said in the log as Nix says it when it substitutes.
      await importInputs(conn, cache, inputs, {
        signal,
        onCopy: (path) => buildLog.write(`copying path '${path}' from '${cacheUrl}'...\n`),
      });
    } catch (err) {
      infrastructure(err);
    }
    phase('inputsMs');

    // 3. Build. Nix enforces both limits itself; the watchdog is for a Nix that does not.
    const watchdog = startWatchdog(conn, timeout, maxSilent);
    let result;
    try {
      result = await conn.buildDerivation(data.drvPath, drv, inputs, {
        maxSilentTime: maxSilent,
        buildTimeout: timeout,
        maxLogSize: 0,
      });
    } catch (err) {
      if (signal.aborted) stopped();
      if (watchdog.fired) throw jobFailure('timeout', watchdog.fired);
      infrastructure(err);
    } finally {
      watchdog.stop();
    }
    // An output already in the store (a retry after a failed push) was not built by this attempt.
    built = result!.status !== BuildStatus.AlreadyValid && result!.status !== BuildStatus.Substituted;
    const verdict = buildVerdict(result!.status);
    if (verdict !== 'success') {
      const message =
        stripAnsi(result!.errorMsg).trim() || `build of ${data.drvPath} failed (status ${result!.status})`;
      log.info({ kind: verdict, status: result!.status }, message);
      throw jobFailure(verdict, message.replace(/^error: /, ''));
    }

    phase('buildMs');
    // 4. Push the outputs (what the cache has is skipped).
    try {
      // The outputs exist only here: an unreachable cache (narhub restarting) is waited for, far
      // longer than other steps, since failing the job would have another spoke build them again.
      await withRetries(
        async () => {
          // A push cut short (the cache answered or went away mid-NAR) leaves the serve
          // connection out of step, and so killed: the next try reads from a fresh one.
          if (!conn.alive) {
            ctx.serve.release(conn);
            conn = await ctx.serve.acquire();
            if (signal.aborted) conn.kill();
          }
          return pushOutputs(conn, ctx.http, cacheUrl, ctx.token, outputs, signal);
        },
        { ...retry, retries: Number.MAX_SAFE_INTEGER, deadline: Date.now() + ctx.pushRetryFor * 1000 },
        onRetry,
      );
    } catch (err) {
      if (signal.aborted)
        throw jobFailure(
          (signal.reason as StopReason | undefined)?.kind ?? 'cancelled',
          'stopped while pushing outputs',
        );
      infrastructure(err);
    }
    phase('pushMs');
  } catch (err) {
    failure =
      err instanceof Error && /^(build|timeout|infrastructure|cancelled):/.test(err.message)
        ? err
        : jobFailure('infrastructure', String((err as Error)?.message ?? err));
  } finally {
    signal.removeEventListener('abort', onAbort);
    conn.onStderr(undefined);
    ctx.serve.release(conn);
    // 5. The log, also for failed builds: to the cache first, then `eof` on the live stream.
    try {
      await buildLog.closeFile();
      const body = await logToStore(ctx.http, data, built, await buildLog.contents(), cacheUrl, ctx.token);
      if (body === 'kept') logPath = `log/${basename(data.drvPath)}`;
      else
        logPath = await withRetries(
          () => uploadLog(ctx.http, cacheUrl, basename(data.drvPath), ctx.token, body),
          { ...retry, signal: undefined },
          onRetry,
        );
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'the build log could not be stored in the cache');
    }
    await buildLog.end();
    await buildLog.dispose();
    phase('logMs');
    log.debug({ ...phases, ms: Date.now() - startedAt }, 'job steps');
  }
  if (failure) throw failure;
  return {
    protocol: PROTOCOL_VERSION,
    spoke: ctx.spokeId,
    attempt: data.attempt,
    outputs,
    startedAt,
    finishedAt: Date.now(),
    logPath,
  };
}

/** Output name -> path: from the job (input-addressed outputs), else from the derivation. */
function outputPaths(data: BuildJobData, drv: Derivation): Record<string, string> {
  if (Object.keys(data.outputs ?? {}).length > 0) return data.outputs;
  const outputs = outputPathsOf(drv);
  if (Object.keys(outputs).length === 0)
    throw jobFailure(
      'build',
      `${data.drvPath} has no output with a known path (floating content-addressed outputs are not supported)`,
      { retry: false },
    );
  return outputs;
}

/** Kills the connection once a limit has passed by the grace period; `fired` says which. */
function startWatchdog(conn: ServeConnection, timeout: number, maxSilent: number) {
  const state = { fired: undefined as string | undefined, stop: (): void => undefined };
  const started = Date.now();
  const check = () => {
    const now = Date.now();
    if (timeout > 0 && now - started > (timeout + WATCHDOG_GRACE_SECONDS) * 1000)
      state.fired = `build exceeded the ${timeout} s time limit and was killed`;
    else if (
      maxSilent > 0 &&
      now - Math.max(conn.lastOutputAt, started) > (maxSilent + WATCHDOG_GRACE_SECONDS) * 1000
    ) {
      state.fired = `build printed nothing for ${maxSilent} s and was killed`;
    }
    if (state.fired) conn.kill();
  };
  if (timeout > 0 || maxSilent > 0) {
    const timer = setInterval(check, 1000);
    timer.unref();
    state.stop = () => clearInterval(timer);
  }
  return state;
}

/**
 * Which log to store for the derivation. Normally the one just collected. But when this attempt
 * did not build it (a retry after a failed push finds the output already in the store), the
 * collected text is mere chatter and must not replace the log already in the cache.
 */
async function logToStore(
  http: CacheHttp,
  data: BuildJobData,
  built: boolean,
  collected: Buffer,
  cacheUrl: string,
  token: string,
): Promise<Buffer | 'kept'> {
  if (built) return collected;
  const head = await http
    .request('HEAD', `${cacheUrl}/log/${basename(data.drvPath)}`, { headers: { authorization: `Bearer ${token}` } })
    .catch(() => undefined);
  head?.resume();
  const status = head?.statusCode ?? 0;
  return okStatus(status) ? 'kept' : collected;
}
