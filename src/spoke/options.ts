/**
 * What a spoke is told at start. The CLI (`narhub spoke`) parses flags into this; everything
 * below `src/spoke/` receives it explicitly.
 */
export interface SpokeOptions {
  /** Name in heartbeats, job results and BullMQ's `processedBy`. */
  id: string;
  /** narhub's base URL, e.g. `http://127.0.0.1:8080`; a job's cache is `<hub>/<job.cacheName>`. */
  hubUrl: string;
  /** Token with write access to the caches jobs name (pushes outputs and logs). */
  token: string;
  redisUrl: string;
  /** Systems this spoke builds for, e.g. `['x86_64-linux']`. */
  systems: string[];
  /** System features it offers, e.g. `['kvm', 'big-parallel']`. */
  features: string[];
  /**
   * Concurrent builds across all queues.
   * @defaultValue 1
   */
  maxJobs: number;
  /**
   * Nix store to build in: `auto` (the machine's store), or a directory for a chroot store.
   * @defaultValue 'auto'
   */
  store: string;
  /**
   * Wall-clock limit of one build in seconds when the job sets none; 0 disables it.
   * @defaultValue 36000
   */
  timeout: number;
  /**
   * Limit in seconds on a build printing nothing when the job sets none; 0 disables it.
   * @defaultValue 7200
   */
  maxSilent: number;
  /**
   * BullMQ lock duration (ms): how soon a job of a dead spoke can be handed to another one.
   * @defaultValue 30000
   */
  lockDuration: number;
  /**
   * BullMQ stalled-job check interval (ms).
   * @defaultValue 30000
   */
  stalledInterval: number;
  /**
   * How often (ms) the set of active queues is read to discover feature queues.
   * @defaultValue 5000
   */
  discoverInterval: number;
  /**
   * First delay (ms) between tries of a network step inside a job (doubling each time).
   * @defaultValue 2000
   */
  retryDelay: number;
  /**
   * Extra tries of a network step (fetching the derivation, pushing outputs and the log).
   * @defaultValue 2
   */
  networkRetries: number;
  /**
   * Seconds the outputs of a successful build are offered to a cache that cannot be reached
   * (narhub restarting) before the job fails and goes to another spoke, which would build them again.
   * @defaultValue 900
   */
  pushRetryFor: number;
}

export const SPOKE_DEFAULTS = {
  maxJobs: 1,
  store: 'auto',
  timeout: 36_000,
  maxSilent: 7_200,
  lockDuration: 30_000,
  stalledInterval: 30_000,
  discoverInterval: 5_000,
  retryDelay: 2_000,
  networkRetries: 2,
  pushRetryFor: 900,
} as const satisfies Partial<SpokeOptions>;

/** The limit a build runs with: the job's when it sets one (> 0), else the spoke's (0 = none). */
export function effectiveLimit(jobValue: number, spokeDefault: number): number {
  return Number.isFinite(jobValue) && jobValue > 0 ? Math.floor(jobValue) : spokeDefault;
}

/** True when `store` names a chroot store (a directory) rather than the machine's store. */
export function isChrootStore(store: string): boolean {
  return store.startsWith('/') || store.startsWith('local?root=');
}
