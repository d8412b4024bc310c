import { basename, join } from 'node:path';
import { UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { isDerivationPath, parseStorePath } from '../nix/store-path.js';
import { type BuildJobData, type BuildJobResult } from '../protocol/build-jobs.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { BuildLog, MAX_LOG_BYTES } from './build-log.js';
import { classifyRealise, jobFailure, lastNixError, substituterTrouble, type StopReason } from './failures.js';
import type { SpokeNixConfig } from './nix-config.js';
import { effectiveLimit } from './options.js';
import { PushError, pushPaths, uploadLog } from './push.js';
import { withRetries } from './retry.js';
import { runProcess } from './run-process.js';

/** Everything a build needs from its spoke. */
export interface BuildContext {
  spokeId: string;
  hubUrl: string;
  token: string;
  nix: SpokeNixConfig;
  /** For the live log stream (not a BullMQ connection). */
  redis: Redis;
  /** Spoke defaults (seconds, 0 = none) for jobs that set no limit. */
  timeout: number;
  maxSilent: number;
  networkRetries: number;
  retryDelay: number;
  logger: Logger;
}

/** The spoke's own watchdog fires this long after the limit Nix enforces itself. */
const WATCHDOG_GRACE_SECONDS = 30;
const FETCH_TIMEOUT_MS = 3600 * 1000;
const CACHE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Checks what the hub sent; a job no spoke can make sense of fails at once. */
function checkJob(data: BuildJobData): void {
  if (typeof data !== 'object' || data === null) throw new UnrecoverableError('infrastructure: job has no data');
  if (data.protocol !== PROTOCOL_VERSION) {
    // Another spoke (of the hub's version) may take it: retryable.
    throw jobFailure('infrastructure', `job speaks protocol ${String(data.protocol)}, this spoke speaks ${PROTOCOL_VERSION}`);
  }
  const bad = (why: string) => jobFailure('infrastructure', `invalid job: ${why}`, { retry: false });
  if (typeof data.drvPath !== 'string') throw bad('no drvPath');
  let drv;
  try {
    drv = parseStorePath(data.drvPath);
  } catch (err) {
    throw bad((err as Error).message);
  }
  if (!isDerivationPath(drv)) throw bad(`${data.drvPath} is not a derivation`);
  if (data.drvHash !== drv.hashPart) throw bad(`drvHash ${String(data.drvHash)} does not match ${data.drvPath}`);
  if (typeof data.cacheName !== 'string' || !CACHE_NAME_RE.test(data.cacheName)) throw bad(`cache name ${JSON.stringify(data.cacheName)}`);
  if (!Array.isArray(data.trustedPublicKeys) || !data.trustedPublicKeys.every((k) => typeof k === 'string' && /^\S+:\S+$/.test(k))) {
    throw bad('trustedPublicKeys must be a list of name:key');
  }
  for (const [name, path] of Object.entries(data.outputs ?? {})) {
    try {
      parseStorePath(path);
    } catch {
      throw bad(`output ${name} is not a store path`);
    }
  }
}

/**
 * Builds one job: fetch the .drv closure from the cache, realise it with the stock Nix client
 * (inputs substituted from the cache), stream the log, push the outputs and the log.
 * Throws `jobFailure(kind, …)` errors only; `signal` stops the build (its reason, a StopReason,
 * says why).
 */
export async function runBuild(data: BuildJobData, ctx: BuildContext, signal: AbortSignal): Promise<BuildJobResult> {
  checkJob(data);
  const startedAt = Date.now();
  const { nix } = ctx;
  const log = ctx.logger.child({ drv: data.drvPath });
  const cacheUrl = `${ctx.hubUrl}/${data.cacheName}`;
  const keys = data.trustedPublicKeys;
  const retry = {
    retries: ctx.networkRetries,
    delayMs: ctx.retryDelay,
    signal,
    retryable: (err: unknown) => !(err instanceof PushError) || err.retryable,
    onRetry: (err: unknown, attempt: number, delayMs: number) => log.warn({ err: (err as Error).message, attempt, delayMs }, 'network step failed, retrying'),
  };
  const stopped = (): never => {
    const reason = signal.reason as StopReason | undefined;
    throw jobFailure(reason?.kind ?? 'cancelled', reason?.message ?? 'build was stopped');
  };

  // 1. The derivation and its closure (input derivations, sources) from the cache.
  try {
    await withRetries(async () => {
      const res = await runProcess(
        'nix',
        ['copy', '--derivation', '--from', cacheUrl, '--to', nix.store, ...nix.options(cacheUrl, keys), data.drvPath],
        { env: nix.env, signal, timeoutMs: FETCH_TIMEOUT_MS },
      );
      if (res.killed === 'aborted') stopped();
      if (res.code !== 0) {
        throw new Error(`fetching ${data.drvPath} from ${cacheUrl} failed: ${lastNixError(res.stderr) ?? `nix copy exited with ${res.code ?? res.signal}`}`);
      }
    }, retry);
  } catch (err) {
    if (signal.aborted) stopped();
    throw jobFailure('infrastructure', (err as Error).message);
  }

  // 2. Realise, streaming the log.
  const timeout = effectiveLimit(data.timeout, ctx.timeout);
  const maxSilent = effectiveLimit(data.maxSilent, ctx.maxSilent);
  const buildLog = await BuildLog.open(ctx.redis, data.drvHash, join(nix.dir, `${data.drvHash}-${startedAt}.log`), (err) =>
    log.warn({ err: (err as Error).message }, 'cannot write the live log to Redis'),
  );
  let logPath: string | null = null;
  let failure: Error | undefined;
  let outputs: Record<string, string> = {};
  try {
    const stop = new AbortController();
    const onAbort = () => stop.abort(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    let partial = '';
    const res = await runProcess(
      'nix-store',
      [
        '--store', nix.store, '-r', data.drvPath,
        ...nix.options(cacheUrl, keys),
        ...nix.buildOptions(),
        '--option', 'max-silent-time', String(maxSilent),
        '--option', 'timeout', String(timeout),
        '-j1',
      ],
      {
        env: nix.env,
        signal: stop.signal,
        timeoutMs: timeout > 0 ? (timeout + WATCHDOG_GRACE_SECONDS) * 1000 : 0,
        silenceMs: maxSilent > 0 ? (maxSilent + WATCHDOG_GRACE_SECONDS) * 1000 : 0,
        onStderr: (text) => {
          buildLog.write(text);
          const lines = (partial + text).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) {
            const trouble = substituterTrouble(line, cacheUrl);
            if (trouble && !stop.signal.aborted) {
              log.warn({ line: trouble }, 'the cache failed during the build; stopping it rather than building inputs locally');
              stop.abort({ kind: 'infrastructure', message: `substituting from ${cacheUrl} failed: ${trouble}` } satisfies StopReason);
            }
          }
        },
      },
    );
    signal.removeEventListener('abort', onAbort);
    const verdict = classifyRealise(res, { timeout, maxSilent });
    if (verdict) {
      log.info({ kind: verdict.kind, exit: res.code, killed: res.killed }, verdict.message);
      failure = jobFailure(verdict.kind, verdict.message);
    } else {
      outputs = await outputsOf(data, res.stdout, nix, cacheUrl, keys);
    }

    // 3. Push the outputs (their closure; what the cache has is skipped).
    if (!failure) {
      try {
        await withRetries(() => pushPaths(nix, cacheUrl, keys, Object.values(outputs), signal), retry);
      } catch (err) {
        failure = signal.aborted ? jobFailure((signal.reason as StopReason | undefined)?.kind ?? 'cancelled', 'stopped while pushing outputs') : jobFailure('infrastructure', (err as Error).message);
      }
    }
  } catch (err) {
    failure = err instanceof Error && /^(build|timeout|infrastructure|cancelled):/.test(err.message) ? err : jobFailure('infrastructure', String((err as Error)?.message ?? err));
  } finally {
    // 4. The log, also for failed builds: to the cache first, then `eof` on the live stream.
    try {
      await buildLog.closeFile();
      const body = await logToStore(data, nix, await buildLog.contents(), cacheUrl, ctx.token);
      if (body === 'kept') logPath = `log/${basename(data.drvPath)}`;
      else logPath = await withRetries(() => uploadLog(cacheUrl, basename(data.drvPath), ctx.token, body), { ...retry, signal: undefined });
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'the build log could not be stored in the cache');
    }
    await buildLog.end();
    await buildLog.dispose();
  }
  if (failure) throw failure;
  return { protocol: PROTOCOL_VERSION, spoke: ctx.spokeId, outputs, startedAt, finishedAt: Date.now(), logPath };
}

/**
 * Which log to store for the derivation. Normally the one just collected. But when this attempt
 * did not build it (a retry after a failed push finds the output already in the store, or the
 * output was substituted because another spoke built it meanwhile), the collected text is mere
 * chatter and must not replace the real log: Nix's own stored log of the build is used, or the
 * one already in the cache is kept.
 */
async function logToStore(data: BuildJobData, nix: SpokeNixConfig, collected: Buffer, cacheUrl: string, token: string): Promise<Buffer | 'kept'> {
  if (collected.includes(`building '${data.drvPath}'`)) return collected;
  const stored = await runProcess('nix-store', ['--store', nix.store, '--read-log', data.drvPath], { env: nix.env, keepChars: MAX_LOG_BYTES });
  if (stored.code === 0 && stored.stdout.trim() !== '') return Buffer.from(stored.stdout);
  const head = await fetch(`${cacheUrl}/log/${basename(data.drvPath)}`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
  return head?.ok ? 'kept' : collected;
}

/**
 * Output name -> path of a finished build. `nix-store -r` prints the output paths; names come
 * from the job (input-addressed outputs) or, failing that, from the derivation itself.
 */
async function outputsOf(
  data: BuildJobData,
  stdout: string,
  nix: SpokeNixConfig,
  cacheUrl: string,
  keys: readonly string[],
): Promise<Record<string, string>> {
  const printed = new Set(stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('/')));
  const fromJob = Object.entries(data.outputs ?? {});
  if (fromJob.length > 0 && fromJob.every(([, p]) => printed.has(p))) return Object.fromEntries(fromJob);
  const res = await runProcess('nix', ['show-derivation', '--store', nix.store, ...nix.options(cacheUrl, keys), data.drvPath], { env: nix.env, keepChars: 64 * 1024 * 1024 });
  if (res.code !== 0) throw jobFailure('infrastructure', `cannot read the outputs of ${data.drvPath}: ${lastNixError(res.stderr) ?? res.code}`);
  const parsed = JSON.parse(res.stdout) as Record<string, { outputs?: Record<string, { path?: string }> }>;
  const drv = parsed[data.drvPath] ?? Object.values(parsed)[0];
  const outputs: Record<string, string> = {};
  for (const [name, out] of Object.entries(drv?.outputs ?? {})) {
    if (out.path && printed.has(out.path)) outputs[name] = out.path;
  }
  if (Object.keys(outputs).length === 0) {
    throw jobFailure('infrastructure', `nix-store -r printed no output of ${data.drvPath}: ${[...printed].join(' ')}`);
  }
  return outputs;
}
