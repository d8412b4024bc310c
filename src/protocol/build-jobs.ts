/**
 * The contract between the hub (producer) and spokes (BullMQ workers). Pure types and names:
 * no Redis or BullMQ imports here, so both sides and the tests share one definition.
 *
 * Queues: one per system and required-feature set, named by `queueName`. A spoke works every
 * queue whose system it has and whose features it has all of; the hub advertises the queues
 * in use in the Redis set `ACTIVE_QUEUES_KEY`, so spokes discover feature queues as they appear.
 * Job ids: `buildJobId(drvHashPart)` — one BullMQ job per derivation, so a derivation wanted by
 * several evaluations or projects is built once.
 */
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { CACHE_NAME_PATTERN } from '../cache-name.js';

const StorePathText = Type.String({ minLength: 1, maxLength: 400 });
const OutputMap = Type.Record(Type.String({ minLength: 1, maxLength: 100 }), StorePathText);

/**
 * The job data, checked on both ends from this one definition (`checkBuildJobData`): by the hub
 * before it enqueues, by the spoke before it builds. What a schema cannot say (store paths that
 * parse, a `drvHash` that is `drvPath`'s, a `drvText` whose path is `drvPath`) the spoke checks
 * after it.
 */
export const BuildJobDataSchema = Type.Object({
  protocol: Type.Integer(),
  /** Hash part of the derivation's store path: the key of its build record. */
  drvHash: Type.String({ pattern: '^[0-9a-df-np-sv-z]{32}$' }),
  /** Full store path of the .drv. */
  drvPath: StorePathText,
  system: Type.String({ minLength: 1, maxLength: 100 }),
  requiredFeatures: Type.Array(Type.String({ minLength: 1, maxLength: 100 })),
  /** Output name -> store path, as known from the derivation (input-addressed). */
  outputs: OutputMap,
  /**
   * The outputs of the input derivations the hub knows (input `.drv` path -> output name ->
   * store path), so the spoke need not fetch and parse those `.drv`s to learn what to import.
   * Inputs missing here are read from their `.drv` in the cache.
   */
  inputOutputs: Type.Optional(Type.Record(StorePathText, OutputMap)),
  /**
   * The `.drv` file's own text, when the hub had it at hand, so the spoke need not fetch it.
   * Its path is its content address: a spoke checks the text against `drvPath` before use.
   */
  drvText: Type.Optional(Type.String()),
  /** The cache inputs are substituted from and outputs are pushed to: `<hub>/<cache>`. */
  cacheName: Type.String({ pattern: CACHE_NAME_PATTERN }),
  /** Public keys the spoke trusts for substitution from that cache: `name:base64`. */
  trustedPublicKeys: Type.Array(Type.String({ pattern: '^\\S+:\\S+$', maxLength: 500 })),
  /** Build attempt number, counted by the hub across restarts by users (not BullMQ retries). */
  attempt: Type.Integer({ minimum: 1 }),
  /** Seconds; 0 means the spoke's default. */
  timeout: Type.Integer({ minimum: 0 }),
  maxSilent: Type.Integer({ minimum: 0 }),
});

export type BuildJobData = Static<typeof BuildJobDataSchema>;

const jobDataChecker = TypeCompiler.Compile(BuildJobDataSchema);

/** Why `data` is not job data of this schema (the first problem, one line), or undefined if it is. */
export function checkBuildJobData(data: unknown): string | undefined {
  if (jobDataChecker.Check(data)) return undefined;
  const first = jobDataChecker.Errors(data).First();
  return `${first?.path || '/'}: ${first?.message ?? 'invalid'}`;
}

export interface BuildJobResult {
  protocol: number;
  spoke: string;
  /** The job's `attempt`, so the hub can tell which attempt a result belongs to without fetching the job. */
  attempt?: number;
  /** Output name -> store path actually produced and pushed. */
  outputs: Record<string, string>;
  startedAt: number;
  finishedAt: number;
  /** Where the log was stored in the cache: `log/<drv basename>`. */
  logPath: string | null;
}

/**
 * Why a job failed, in `job.failedReason` as `<kind>: <message>`. `build` failures are
 * deterministic (the spoke throws BullMQ's UnrecoverableError, so no retry); `infrastructure`
 * failures (network, cache, the spoke itself) are retried with backoff and never count as build
 * failures; `timeout` and `cancelled` are as they say.
 */
export type BuildFailureKind = 'build' | 'timeout' | 'infrastructure' | 'cancelled';

export function formatFailure(kind: BuildFailureKind, message: string): string {
  return `${kind}: ${message.split('\n')[0]!.slice(0, 2000)}`;
}

export function parseFailure(reason: string | undefined): { kind: BuildFailureKind; message: string } {
  const m = /^(build|timeout|infrastructure|cancelled): ?([\s\S]*)$/.exec(reason ?? '');
  return m
    ? { kind: m[1] as BuildFailureKind, message: m[2]! }
    : { kind: 'infrastructure', message: reason ?? 'unknown failure' };
}

/** BullMQ forbids ':' in queue names and job ids; features are sorted so a set has one name. */
export function queueName(system: string, requiredFeatures: readonly string[]): string {
  const features = [...new Set(requiredFeatures)].sort();
  const name = ['build', system, ...features].join('+').replace(/:/g, '_');
  return name.replace(/^build\+/, 'build-');
}

/** The (system, features) a queue name stands for. */
export function parseQueueName(name: string): { system: string; requiredFeatures: string[] } | undefined {
  if (!name.startsWith('build-')) return undefined;
  const [system, ...requiredFeatures] = name.slice('build-'.length).split('+');
  return system ? { system, requiredFeatures } : undefined;
}

export function buildJobId(drvHash: string): string {
  return `build-${drvHash}`;
}

/** A spoke may take jobs from a queue when it has the system and every required feature. */
export function spokeCanServe(
  spoke: { systems: string[]; features: string[] },
  system: string,
  requiredFeatures: readonly string[],
): boolean {
  return spoke.systems.includes(system) && requiredFeatures.every((f) => spoke.features.includes(f));
}

/** Redis keys shared by hub and spokes, all under one prefix. */
export const REDIS_PREFIX = 'narhub';
export const ACTIVE_QUEUES_KEY = `${REDIS_PREFIX}:queues`;
export const spokeKey = (id: string) => `${REDIS_PREFIX}:spoke:${id}`;
/**
 * A Redis stream of log chunks (`XADD … data <chunk>`), ended by an entry with `eof 1`.
 * Added in the spoke (compatible): each build attempt starts the stream afresh (DEL), entries are
 * capped (`MAXLEN ~`), the key expires a day after the last write, and `eof` is written only
 * after the log has been stored in the cache (`BuildJobResult.logPath`).
 */
export const logStreamKey = (drvHash: string) => `${REDIS_PREFIX}:log:${drvHash}`;
/** Pub/sub channel: the message is a drvHash whose running build must be killed. */
export const CANCEL_CHANNEL = `${REDIS_PREFIX}:cancel`;

/** What a spoke writes to `spokeKey(id)` (JSON, with a TTL) every few seconds. */
export interface SpokeHeartbeat {
  protocol: number;
  id: string;
  hostname: string;
  systems: string[];
  features: string[];
  maxJobs: number;
  /** 1-minute load average. */
  load: number;
  /** drvHash of each running build. */
  running: string[];
  startedAt: number;
  seenAt: number;
}

export const HEARTBEAT_INTERVAL_MS = 5_000;
export const HEARTBEAT_TTL_SECONDS = 20;
