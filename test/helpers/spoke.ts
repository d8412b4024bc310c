// Starts real `narhub spoke` processes and drives the build queues the way the hub does.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { buildJobId, queueName, type BuildJobData, type BuildJobResult } from '../../src/protocol/build-jobs.js';
import { startCliDaemon } from './cli-daemon.js';
import type { Cleanup } from './tmp.js';

export interface SpokeProcessOptions {
  id: string;
  hub: string;
  redisUrl: string;
  tokenFile: string;
  systems: string[];
  features?: string[];
  store: string;
  maxJobs?: number;
  /** Extra flags, e.g. ['--lock-duration', '2000']. */
  args?: string[];
  /** Environment for the spoke (and so for its Nix commands). */
  env: NodeJS.ProcessEnv;
}

export interface SpokeProcess {
  id: string;
  /** stdout + stderr so far. */
  output(): string;
  /** Resolves with how the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  signal(sig: NodeJS.Signals): void;
}

/** Spawns `narhub spoke …` and waits for its `spoke ready` log line. */
export async function startSpokeProcess(t: Cleanup, opts: SpokeProcessOptions): Promise<SpokeProcess> {
  const argv = [
    'spoke',
    '--id',
    opts.id,
    '--hub',
    opts.hub,
    '--redis-url',
    opts.redisUrl,
    '--token-file',
    opts.tokenFile,
    '--systems',
    opts.systems.join(','),
    '--store',
    opts.store,
    // Short discovery and retry delays so the tests need not wait.
    '--discover-interval',
    '300',
    '--retry-delay',
    '100',
    ...(opts.features && opts.features.length > 0 ? ['--features', opts.features.join(',')] : []),
    ...(opts.maxJobs ? ['--max-jobs', String(opts.maxJobs)] : []),
    ...(opts.args ?? []),
  ];
  const spoke = startCliDaemon(t, argv, opts.env, {
    label: `spoke ${opts.id}`,
    // A spoke killed with SIGKILL leaves its detached nix-store behind: end those (by store path).
    cleanup: () => killProcessesMentioning(opts.store),
  });
  await spoke.waitFor(/^\{.*"msg":"spoke ready"/m, 30_000);
  return { id: opts.id, output: spoke.output, exited: spoke.exited, signal: spoke.signal };
}

/** Command lines of the running processes (like `ps -eo args`). */
export function processCommandLines(): { pid: number; args: string }[] {
  const out: { pid: number; args: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
        .split('\0')
        .filter((a) => a !== '')
        .join(' ');
      if (args !== '') out.push({ pid: Number(entry), args });
    } catch {
      // gone
    }
  }
  return out;
}

function killProcessesMentioning(text: string): void {
  for (const p of processCommandLines()) {
    if (p.pid !== process.pid && p.args.includes(text)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** A BullMQ producer for the tests: adds jobs the way the hub does and waits for them. */
export class TestQueues {
  readonly #url: string;
  readonly #queues = new Map<string, Queue<BuildJobData, BuildJobResult>>();

  constructor(t: Cleanup, redisUrl: string) {
    this.#url = redisUrl;
    t.after(async () => {
      await Promise.all([...this.#queues.values()].map((q) => q.close()));
    });
  }

  queue(system: string, features: string[] = []): Queue<BuildJobData, BuildJobResult> {
    const name = queueName(system, features);
    let q = this.#queues.get(name);
    if (!q) {
      q = new Queue<BuildJobData, BuildJobResult>(name, { connection: { url: this.#url, maxRetriesPerRequest: null } });
      q.on('error', () => undefined);
      this.#queues.set(name, q);
    }
    return q;
  }

  async add(data: BuildJobData, opts: { attempts?: number } = {}): Promise<Job<BuildJobData, BuildJobResult>> {
    return this.queue(data.system, data.requiredFeatures).add('build', data, {
      jobId: buildJobId(data.drvHash),
      attempts: opts.attempts ?? 3,
      backoff: { type: 'fixed', delay: 200 },
    });
  }

  /** Polls until the job is completed or failed; returns the job as it then is. */
  async finished(
    data: BuildJobData,
    timeoutMs = 120_000,
    describe: () => string = () => '',
  ): Promise<Job<BuildJobData, BuildJobResult>> {
    const q = this.queue(data.system, data.requiredFeatures);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await q.getJob(buildJobId(data.drvHash));
      if (job) {
        const state = await job.getState();
        // Read the job again: it may have finished between the read and the state check.
        if (state === 'completed' || state === 'failed') return (await q.getJob(buildJobId(data.drvHash)))!;
      }
      if (Date.now() > deadline)
        throw new Error(`job ${buildJobId(data.drvHash)} did not finish within ${timeoutMs} ms\n${describe()}`);
      await sleep(100);
    }
  }

  async state(data: BuildJobData): Promise<string> {
    const job = await this.queue(data.system, data.requiredFeatures).getJob(buildJobId(data.drvHash));
    return job ? job.getState() : 'missing';
  }
}

/** A plain Redis client for the test's own reads, closed after the test. */
export function testRedis(t: Cleanup, url: string): Redis {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  t.after(() =>
    r.quit().then(
      () => undefined,
      () => r.disconnect(),
    ),
  );
  return r;
}

/** Polls `check` every 50 ms until it returns a value other than undefined. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 60_000,
  describe: () => string = () => '',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${describe()}`);
    await sleep(50);
  }
}
