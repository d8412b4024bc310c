// `node dist/bench/hub-dispatch.bench.js [--sizes 10000,30000,100000] [--layers 1] [--spokes 8] [--max-jobs 2]
//   [--drv-bytes 1000] [--max-seconds 600]`: the hub against the size of an evaluation, Nix left out.
//
// The real hub (createHub: evaluation runner, planner, build graph, BullMQ dispatcher, event
// consumer, SQLite) runs in this process on a real redis-server; only its evaluation source is a
// synthetic graph (width × layers derivations, each depending on three of the layer below, as
// `test/helpers/layered-graph.ts`), handed over as `nix show-derivation -r` would, with `.drv`
// texts of --drv-bytes that count as uploaded. Simulated spokes (a child process: BullMQ Workers
// on the real queues, --max-jobs each) report success without building.
//
// For each size, on a fresh database and Redis:
// 1. evaluate: trigger → evaluated (every build recorded, the runnable ones' jobs added), the
//    hub's steps from its log, the event loop's longest stall, Redis memory with the runnable
//    jobs queued (the spokes start only once all of them are);
// 2. dispatch: the spokes drain the queues. Per job, runnable → picked by an idle spoke: when
//    the job was taken, less the later of when it became runnable (its job added, for the first
//    wave; its last input reported done, for later ones) and when a slot of that spoke was free;
//    and the hub's reaction (last input done → job added). Until the evaluation succeeded;
// 3. the same commit again with everything built: the outputs are put in the cache's database as
//    the spokes' pushes would have (a fixture: one NAR row, a path row per output), and the
//    evaluation is timed from trigger to its end.
// Also the process's peak RSS (this process is the hub; the spokes are another). Prints a line
// per step and one JSON line. Never part of `npm test`; every size stops at --max-seconds.
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import { createCacheService } from '../src/cache/cache-service.js';
import { parseConfig } from '../src/config/load.js';
import { defaultMigrationsDir, migrate } from '../src/db/migrate.js';
import { openDatabase } from '../src/db/open.js';
import type { DrvGraph, DrvNode } from '../src/hub/derivation-graph.js';
import type { EvaluationSource } from '../src/hub/evaluation-source.js';
import { createHub } from '../src/hub/hub-service.js';
import { encodeNix32 } from '../src/nix/nix32.js';
import { queueName, type BuildJobData, type BuildJobResult } from '../src/protocol/build-jobs.js';
import { PROTOCOL_VERSION } from '../src/protocol/version.js';
import { createLocalBlobStore } from '../src/storage/local-blob-store.js';
import { startRedis } from '../test/helpers/redis.js';
import { makeTempDir } from '../test/helpers/tmp.js';
import { measureCurve } from './lib/curve.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string' },
    layers: { type: 'string' },
    spokes: { type: 'string' },
    'max-jobs': { type: 'string' },
    'drv-bytes': { type: 'string' },
    'max-seconds': { type: 'string' },
    // Internal: this file run as the simulated spokes' process.
    'simulated-spokes': { type: 'string' },
  },
});
const LAYERS = Number(values.layers ?? 1);
const SIZES = (values.sizes ?? '10000,30000,100000').split(',').map(Number);
const SPOKES = Number(values.spokes ?? 8);
const MAX_JOBS = Number(values['max-jobs'] ?? 2);
const DRV_BYTES = Number(values['drv-bytes'] ?? 1000);
const MAX_MS = Number(values['max-seconds'] ?? 600) * 1000;
const SYSTEM = 'x86_64-linux';

/** One job as a simulated spoke saw it: [job id, added, picked, slot free since, finished]. */
type JobRecord = [string, number, number, number, number];

// ---------------------------------------------------------------- the simulated spokes (child)

async function runSpokes(redisUrl: string): Promise<void> {
  const records: JobRecord[] = [];
  const workers: Worker<BuildJobData, BuildJobResult>[] = [];
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  for (let s = 0; s < SPOKES; s++) {
    const spoke = `sim-${s}`;
    // When each build slot of this spoke was last free: a job is taken by the slot freed first.
    const slots = new Array<number>(MAX_JOBS).fill(Date.now());
    const worker = new Worker<BuildJobData, BuildJobResult>(
      queueName(SYSTEM, []),
      async (job) => {
        const picked = Date.now();
        const k = slots.indexOf(Math.min(...slots));
        const free = slots[k]!;
        slots[k] = Number.POSITIVE_INFINITY;
        const finished = Date.now();
        slots[k] = finished;
        records.push([job.id!, job.timestamp, picked, free, finished]);
        return {
          protocol: PROTOCOL_VERSION,
          spoke,
          attempt: job.data.attempt,
          outputs: job.data.outputs,
          startedAt: picked,
          finishedAt: finished,
          logPath: null,
        };
      },
      { connection, name: spoke, concurrency: MAX_JOBS, autorun: true },
    );
    worker.on('error', () => undefined);
    workers.push(worker);
  }
  process.send!({ ready: true });
  await new Promise<void>((resolve) => process.once('message', () => resolve()));
  await Promise.all(workers.map((w) => w.close()));
  connection.disconnect();
  // In pieces: one IPC message of every record of 100,000 jobs would be large for nothing.
  for (let i = 0; i < records.length; i += 20_000) process.send!({ records: records.slice(i, i + 20_000) });
  process.send!({ done: true });
}

// ---------------------------------------------------------------- the synthetic evaluation

/** A store path hash part from a name (32 Nix32 characters). */
const hashPart = (name: string) => encodeNix32(createHash('sha256').update(name).digest().subarray(0, 20));

interface Synthetic {
  width: number;
  /** Full .drv paths, layer by layer. */
  drvPaths: string[][];
  source: EvaluationSource;
  /** Every derivation's output path (full). */
  outputs(): string[];
  /** drvHash → the drvHashes of its inputs. */
  inputsOf: Map<string, string[]>;
}

function synthetic(size: number, nonce: string): Synthetic {
  const width = Math.max(1, Math.round(size / LAYERS));
  const drvPaths: string[][] = [];
  const outPaths: string[][] = [];
  for (let layer = 0; layer < LAYERS; layer++) {
    drvPaths.push([]);
    outPaths.push([]);
    for (let i = 0; i < width; i++) {
      const name = `bench-${layer}-${i}`;
      drvPaths[layer]!.push(`/nix/store/${hashPart(`${nonce} drv ${name}`)}-${name}.drv`);
      outPaths[layer]!.push(`/nix/store/${hashPart(`${nonce} out ${name}`)}-${name}`);
    }
  }
  const inputIndices = (layer: number, i: number) =>
    layer === 0 ? [] : [...new Set([i, (i * 7 + 1) % width, (i * 13 + 5) % width])];
  const inputsOf = new Map<string, string[]>();
  for (let layer = 0; layer < LAYERS; layer++)
    for (let i = 0; i < width; i++)
      inputsOf.set(
        drvPaths[layer]![i]!.slice(11, 43),
        inputIndices(layer, i).map((k) => drvPaths[layer - 1]![k]!.slice(11, 43)),
      );
  const padding = 'x'.repeat(Math.max(0, DRV_BYTES - 200));
  const source: EvaluationSource = {
    lock: async () => ({ lockedUrl: `path:/synthetic/${nonce}`, revision: null }),
    jobs: async () =>
      drvPaths[LAYERS - 1]!.map((drvPath, i) => ({
        attr: `checks.${SYSTEM}.top-${i}`,
        system: SYSTEM,
        drvPath,
        error: null,
      })),
    // What `nix show-derivation -r` hands over, built afresh for every evaluation as the real one is.
    derivations: async () => {
      const graph: DrvGraph = new Map();
      for (let layer = 0; layer < LAYERS; layer++)
        for (let i = 0; i < width; i++) {
          const drvPath = drvPaths[layer]![i]!;
          const node: DrvNode = {
            drvPath,
            drvHash: drvPath.slice(11, 43),
            system: SYSTEM,
            requiredFeatures: [],
            outputs: { out: outPaths[layer]![i]! },
            inputDrvs: inputIndices(layer, i)
              .map((k) => drvPaths[layer - 1]![k]!)
              .sort(),
          };
          graph.set(drvPath, node);
        }
      return { graph, errors: new Map() };
    },
    // Every .drv counts as uploaded; a text of --drv-bytes each, as a real upload hands over,
    // handed over in the order asked (dependencies first), yielding as real uploads would.
    upload: async (_cache, _row, paths, opts) => {
      let n = 0;
      for (const p of paths) {
        opts.onReady?.(p, Buffer.from(`Derive([("out","${p.slice(0, -4)}","","")],[],[],"${SYSTEM}",${padding})`));
        if (++n % 1000 === 0) await new Promise((r) => setImmediate(r));
      }
      return paths.length;
    },
  };
  return { width, drvPaths, source, outputs: () => outPaths.flat(), inputsOf };
}

// ---------------------------------------------------------------- the measurement

interface SizeResult {
  derivations: number;
  width: number;
  layers: number;
  first: { totalMs: number; phases: Record<string, number>; maxLoopStallMs: number };
  queued: number;
  redisQueuedMb: number;
  redisPeakMb: number;
  dispatch: {
    jobs: number;
    drainMs: number;
    perSecond: number;
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    reactionP50Ms: number | null;
    reactionP99Ms: number | null;
  };
  again: { totalMs: number; phases: Record<string, number>; maxLoopStallMs: number; status: string };
  /** Peak RSS once the first evaluation is evaluated; then at the end (the spokes' records added). */
  rssAfterEvaluationMb: number;
  peakRssMb: number;
  loadAverage: number[];
}

const mb = (bytes: number) => Math.round(bytes / 1024 ** 2);
const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

async function redisMemory(url: string): Promise<{ used: number; peak: number }> {
  const conn = new Redis(url);
  try {
    const info = await conn.info('memory');
    return {
      used: Number(/^used_memory:(\d+)/m.exec(info)![1]),
      peak: Number(/^used_memory_peak:(\d+)/m.exec(info)![1]),
    };
  } finally {
    conn.disconnect();
  }
}

async function measure(size: number): Promise<SizeResult> {
  const cleanups: (() => unknown)[] = [];
  const scope = { after: (fn: () => unknown) => void cleanups.push(fn) };
  const deadline = Date.now() + MAX_MS;
  /** Set when the simulated spokes' process ends before it reported: every wait stops then. */
  let spokesGone: Error | undefined;
  const left = () => {
    if (spokesGone) throw spokesGone;
    const ms = deadline - Date.now();
    if (ms <= 0) throw new Error(`not done within ${MAX_MS / 1000} s`);
    return ms;
  };
  try {
    const nonce = createHash('sha256').update(`${process.pid} ${Date.now()}`).digest('hex').slice(0, 12);
    const g = synthetic(size, nonce);
    const redis = await startRedis(scope);
    const dataDir = await makeTempDir(scope, 'narhub-dispatch-bench-');
    const db = openDatabase(join(dataDir, 'narhub.sqlite'));
    migrate(db, defaultMigrationsDir());
    const store = createLocalBlobStore({ root: join(dataDir, 'store'), fsync: false });
    const cache = createCacheService({ db, store, keysDir: join(dataDir, 'keys') });
    await cache.registry.create('main', { private: false, priority: 40 });
    // The hub's log, read for the steps of each evaluation ('evaluated' lines).
    const evaluatedLines: Record<string, unknown>[] = [];
    const logStream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (!line.includes('"msg":"evaluated"')) continue;
          evaluatedLines.push(JSON.parse(line) as Record<string, unknown>);
        }
        done();
      },
    });
    const hub = createHub({
      db,
      cache,
      config: parseConfig({}).hub,
      redisUrl: redis.url,
      logger: pino({ level: 'info' }, logStream),
      evaluationSource: g.source,
    });
    await hub.start();
    scope.after(async () => {
      await hub.close();
      await store.close();
      db.close();
    });
    hub.createProject('synthetic', { flake: `path:/synthetic/${nonce}`, cache: 'main', systems: [SYSTEM] });

    // Read straight from the table: the API's view counts the builds, which the bench must not add.
    const statusRow = db.prepare<[number], { status: string }>('SELECT status FROM evaluations WHERE id = ?');
    const statusOf = (id: number) => statusRow.get(id)!.status;
    /** Polls until the evaluation leaves the given statuses. */
    const waitPast = async (id: number, statuses: string[], every: number) => {
      while (statuses.includes(statusOf(id))) {
        await sleep(every);
        left();
      }
      return statusOf(id);
    };
    const evaluate = async (): Promise<{
      id: number;
      started: number;
      totalMs: number;
      phases: Record<string, number>;
      maxLoopStallMs: number;
      status: string;
    }> => {
      const loop = monitorEventLoopDelay({ resolution: 10 });
      loop.enable();
      const started = Date.now();
      const { id } = hub.triggerEvaluation('synthetic');
      const status = await waitPast(id, ['pending', 'evaluating'], 20);
      const totalMs = Date.now() - started;
      loop.disable();
      const line = evaluatedLines.filter((l) => l.evaluation === id).pop() ?? {};
      const phases = Object.fromEntries(
        Object.entries(line).filter(([k, v]) => /Ms$/.test(k) && typeof v === 'number'),
      ) as Record<string, number>;
      return { id, started, totalMs, phases, maxLoopStallMs: Math.round(loop.max / 1e6), status };
    };

    // 1. Evaluate with no spoke; every runnable job is then in the queue.
    const first = await evaluate();
    const rssAfterEvaluationMb = mb(process.resourceUsage().maxRSS * 1024);
    const queueKey = `bull:${queueName(SYSTEM, [])}`;
    const conn = new Redis(redis.url);
    scope.after(() => conn.disconnect());
    // The first layer: no inputs.
    const runnable = g.width;
    let queued = 0;
    while (queued < runnable) {
      queued = (await conn.zcard(`${queueKey}:prioritized`)) + (await conn.llen(`${queueKey}:wait`));
      if (queued < runnable) await sleep(50);
      left();
    }
    const redisQueued = await redisMemory(redis.url);

    // 2. The spokes drain it.
    const child = fork(
      new URL(import.meta.url).pathname,
      [
        '--simulated-spokes',
        redis.url,
        '--spokes',
        String(SPOKES),
        '--max-jobs',
        String(MAX_JOBS),
        '--layers',
        String(LAYERS),
      ],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    scope.after(() => child.kill('SIGKILL'));
    const records: JobRecord[] = [];
    const childDone = new Promise<void>((resolve, reject) => {
      child.on('message', (m: { records?: JobRecord[]; done?: boolean }) => {
        if (m.records) records.push(...m.records);
        if (m.done) resolve();
      });
      child.once('exit', (code, signal) => {
        spokesGone = new Error(`the simulated spokes exited (${code ?? signal}) before reporting`);
        reject(spokesGone);
      });
    });
    // Rejected while nobody awaits it yet (during the drain): \`left()\` reports it there.
    childDone.catch(() => undefined);
    await new Promise<void>((resolve) => child.once('message', () => resolve()));
    const drainStarted = Date.now();
    const firstStatus = await waitPast(first.id, ['building'], 100);
    if (firstStatus !== 'succeeded') throw new Error(`the first evaluation ended ${firstStatus}`);
    const drainMs = Date.now() - drainStarted;
    child.send('stop');
    await childDone;

    const added = new Map<string, number>();
    const finished = new Map<string, number>();
    for (const [id, timestamp, , , done] of records) {
      added.set(id.replace(/^build-/, ''), timestamp);
      finished.set(id.replace(/^build-/, ''), done);
    }
    const dispatch: number[] = [];
    const reaction: number[] = [];
    for (const [id, timestamp, picked, slotFree] of records) {
      const inputs = g.inputsOf.get(id.replace(/^build-/, '')) ?? [];
      const runnableAt = inputs.length === 0 ? timestamp : Math.max(...inputs.map((h) => finished.get(h) ?? 0));
      if (inputs.length > 0) reaction.push(timestamp - runnableAt);
      dispatch.push(picked - Math.max(runnableAt, slotFree));
    }
    const memory = await redisMemory(redis.url);

    // 3. The same commit again, every output in the cache (the spokes' pushes, as a fixture).
    const cacheId = cache.registry.require('main').id;
    const now = Date.now();
    db.transaction(() => {
      const narId = db
        .prepare(`INSERT INTO nars (cache_id, file_name, storage_key, compression, file_hash, file_size, nar_hash,
          nar_size, state, created_at) VALUES (?, 'bench.nar', 'bench.nar', 'none', 'sha256:x', 1, 'sha256:x', 1,
          'valid', ?)`)
        .run(cacheId, now).lastInsertRowid;
      const insert = db.prepare(`INSERT INTO store_paths (cache_id, hash_part, name, nar_id, narinfo, created_at,
        updated_at) VALUES (?, ?, ?, ?, '', ?, ?)`);
      for (const out of g.outputs()) insert.run(cacheId, out.slice(11, 43), out.slice(44), narId, now, now);
    })();
    const evaluated = await evaluate();
    const againStatus = await waitPast(evaluated.id, ['building'], 20);
    const again = { ...evaluated, status: againStatus, totalMs: Date.now() - evaluated.started };

    return {
      derivations: g.width * LAYERS,
      width: g.width,
      layers: LAYERS,
      first: { totalMs: first.totalMs, phases: first.phases, maxLoopStallMs: first.maxLoopStallMs },
      queued,
      redisQueuedMb: mb(redisQueued.used),
      redisPeakMb: mb(memory.peak),
      dispatch: {
        jobs: records.length,
        drainMs,
        perSecond: Math.round(records.length / (drainMs / 1000)),
        p50Ms: pct(dispatch, 50),
        p99Ms: pct(dispatch, 99),
        maxMs: Math.max(...dispatch),
        reactionP50Ms: reaction.length > 0 ? pct(reaction, 50) : null,
        reactionP99Ms: reaction.length > 0 ? pct(reaction, 99) : null,
      },
      again,
      rssAfterEvaluationMb,
      peakRssMb: mb(process.resourceUsage().maxRSS * 1024),
      loadAverage: loadavg().map((x) => Math.round(x * 10) / 10),
    };
  } finally {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  await measureCurve({
    sizes: SIZES,
    measure,
    params: { started: new Date().toISOString(), layers: LAYERS, spokes: SPOKES, maxJobs: MAX_JOBS },
    print(r) {
      const out = (s: string) => process.stdout.write(`${String(r.derivations).padStart(7)} ${s}\n`);
      const p = (ms: number | undefined) => `${((ms ?? 0) / 1000).toFixed(2)} s`;
      const f = r.first;
      const rate = Math.round(r.derivations / ((f.totalMs - (f.phases.graphMs ?? 0)) / 1000));
      out(
        `evaluate: ${p(f.totalMs)} (graph ${p(f.phases.graphMs)}, plan ${p(f.phases.planMs)}, ` +
          `upload ${p(f.phases.uploadMs)}, record ${p(f.phases.recordMs)}), ` +
          `${rate} derivations/s after the graph, ` +
          `longest event-loop stall ${f.maxLoopStallMs} ms`,
      );
      out(`queued: ${r.queued} runnable jobs, Redis ${r.redisQueuedMb} MB (peak over the run ${r.redisPeakMb} MB)`);
      const d = r.dispatch;
      out(
        `dispatch: ${d.jobs} jobs in ${p(d.drainMs)} (${d.perSecond}/s), runnable → picked p50 ${d.p50Ms} ms, ` +
          `p99 ${d.p99Ms} ms, max ${d.maxMs} ms` +
          (d.reactionP50Ms === null ? '' : `; hub reaction p50 ${d.reactionP50Ms} ms, p99 ${d.reactionP99Ms} ms`),
      );
      out(
        `again (all built): ${p(r.again.totalMs)} to ${r.again.status} (plan ${p(r.again.phases.planMs)}), ` +
          `longest stall ${r.again.maxLoopStallMs} ms`,
      );
      out(`hub process peak RSS ${r.rssAfterEvaluationMb} MB when evaluated, ${r.peakRssMb} MB at the end`);
      out(`load average ${r.loadAverage.join(' ')}`);
    },
  });
}

if (values['simulated-spokes'] !== undefined) {
  runSpokes(values['simulated-spokes']).catch((err: unknown) => {
    process.stderr.write(`simulated spokes failed: ${String(err)}\n`);
    process.exit(1);
  });
} else {
  main()
    .catch((err: unknown) => {
      process.stderr.write(
        `hub dispatch bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = 1;
    })
    .finally(() => {
      // Open handles of a failed size must not keep the bench alive past its bound.
      setTimeout(() => process.exit(), 5_000).unref();
    });
}
