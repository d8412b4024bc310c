// `node dist/bench/hub-planning.bench.js [--sizes 1000,10000,30000] [--layers 30] [--max-seconds 900]`:
// the hub's side of one evaluation against the evaluation's size, with no spoke attached, on the
// layered synthetic flake of `bench/hub.bench.ts` (width × layers derivations, each depending on
// three of the layer below). For each size: a fresh server and Redis, and the same commit
// evaluated twice (the second time every `.drv` is in the cache already). It reports Nix's time
// (`nix eval`, `nix show-derivation -r` with its parse) apart from the hub's (plan, `.drv` upload,
// recording), the planning rate (derivations per second of the hub's time), the server's peak
// RSS (VmHWM) and Redis's peak memory. A size that does not finish in --max-seconds is reported
// as such and the curve stops there. Never part of `npm test`. Prints a table and one JSON line.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { hubApi, waitFor } from '../test/helpers/hub.js';
import { layeredFlakeNix, layeredGraphNix } from '../test/helpers/layered-graph.js';
import { createNixEnv } from '../test/helpers/nix.js';
import { startRedis } from '../test/helpers/redis.js';
import { jsonLines, runCliOk, startServer, type RunningServer } from '../test/helpers/server.js';
import { makeTempDir } from '../test/helpers/tmp.js';
import { measureCurve } from './lib/curve.js';
import { childPids } from './lib/proc.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string' },
    layers: { type: 'string' },
    'max-seconds': { type: 'string' },
  },
});
const LAYERS = Number(values.layers ?? 30);
const SIZES = (values.sizes ?? '1000,10000,30000').split(',').map(Number);
const MAX_MS = Number(values['max-seconds'] ?? 900) * 1000;

interface Evaluation {
  status: string;
  error: string | null;
  /** The hub's log of the evaluation's steps: lockMs, evalMs, graphMs, planMs, uploadMs, recordMs. */
  phases: Record<string, number>;
  /** Evaluation requested → evaluated (every build recorded, the runnable ones queued). */
  totalMs: number;
  /** Requests of the bench (a poll every 200 ms) the server answered 503, shedding load. */
  shed: number;
}

interface SizeResult {
  derivations: number;
  width: number;
  layers: number;
  first: Evaluation;
  again: Evaluation;
  serverPeakRssMb: number;
  redisPeakMb: number;
}

const mb = (bytes: number) => Math.round(bytes / 1024 ** 2);

/** VmHWM (peak resident set) of the server process, in bytes. */
async function peakRss(server: RunningServer): Promise<number> {
  for (const pid of await childPids(process.pid)) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmd.split('\0').includes(server.dataDir)) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)![1]) * 1024;
  }
  throw new Error(`no server process with data dir ${server.dataDir}`);
}

async function evaluate(server: RunningServer, deadline: number): Promise<Evaluation> {
  const api = hubApi(() => server.url, server.adminToken);
  const started = Date.now();
  // The server sheds load (503) while its event loop lags: asked again until it answers.
  let shed = 0;
  const counting503 = async <T>(call: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await call();
    } catch (err) {
      if (!/: 503 /.test(String(err))) throw err;
      shed++;
      return undefined;
    }
  };
  const { id } = await waitFor(
    'the evaluation to be accepted',
    () => counting503(() => api.post<{ id: number }>('/projects/plan/evaluations')),
    60_000,
    200,
  );
  const done = await waitFor(
    `evaluation ${id} to be evaluated`,
    async () => {
      const e = await counting503(() => api.get<{ status: string; error: string | null }>(`/evaluations/${id}`));
      return e && e.status !== 'pending' && e.status !== 'evaluating' ? e : undefined;
    },
    Math.max(0, deadline - Date.now()),
    200,
  );
  const totalMs = Date.now() - started;
  const line = jsonLines(server.stdout())
    .filter((l) => l.evaluation === id && typeof l.uploadMs === 'number')
    .pop();
  const phases = Object.fromEntries(
    Object.entries(line ?? {}).filter(([k, v]) => /Ms$/.test(k) && typeof v === 'number'),
  ) as Record<string, number>;
  return { status: done.status, error: done.error, phases, totalMs, shed };
}

async function measure(size: number): Promise<SizeResult> {
  const cleanups: (() => unknown)[] = [];
  const scope = { after: (fn: () => unknown) => void cleanups.push(fn) };
  try {
    const width = Math.max(1, Math.round(size / LAYERS));
    const redis = await startRedis(scope);
    const nix = await createNixEnv(scope);
    const server = await startServer(scope, { args: ['--redis-url', redis.url], env: nix.env });
    const dir = await makeTempDir(scope, 'narhub-plan-bench-');
    await writeFile(join(dir, 'graph.nix'), layeredGraphNix(width, LAYERS));
    await writeFile(join(dir, 'flake.nix'), layeredFlakeNix(randomBytes(6).toString('hex')));
    const auth = ['--server', server.url, '--token', server.adminToken];
    await runCliOk(['project', 'create', 'plan', '--flake', `path:${dir}`, ...auth]);
    const deadline = Date.now() + MAX_MS;
    const first = await evaluate(server, deadline);
    const again = await evaluate(server, deadline);
    const serverPeakRssMb = mb(await peakRss(server));
    const conn = new Redis(redis.url);
    const info = await conn.info('memory');
    conn.disconnect();
    const redisPeakMb = mb(Number(/^used_memory_peak:(\d+)/m.exec(info)![1]));
    return { derivations: width * LAYERS, width, layers: LAYERS, first, again, serverPeakRssMb, redisPeakMb };
  } finally {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  }
}

/** The hub's own time in an evaluation: everything after Nix handed over the graph. */
const hubMs = (e: Evaluation) => (e.phases.planMs ?? 0) + (e.phases.uploadMs ?? 0) + (e.phases.recordMs ?? 0);
const nixMs = (e: Evaluation) => (e.phases.evalMs ?? 0) + (e.phases.graphMs ?? 0);
const perSecond = (n: number, ms: number) => Math.round(n / (ms / 1000));
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** One evaluation's line: Nix's time, the hub's by step, the rate, and what the server shed. */
function describe(derivations: number, e: Evaluation): string {
  const p = (name: string) => s(e.phases[name] ?? 0);
  const nix = `Nix ${s(nixMs(e))} (eval ${p('evalMs')}, show-derivation ${p('graphMs')})`;
  const hub = `hub ${s(hubMs(e))} (plan ${p('planMs')}, upload ${p('uploadMs')}, record ${p('recordMs')})`;
  const rates =
    `${perSecond(derivations, hubMs(e))} derivations/s planned, ` +
    `${perSecond(derivations, e.phases.planMs ?? 0)}/s plan alone`;
  const end = `${e.shed} requests shed${e.error ? ` — ${e.error}` : ''}`;
  return `${e.status}: total ${s(e.totalMs)}, ${nix}, ${hub}: ${rates}, ${end}`;
}

async function main(): Promise<void> {
  await measureCurve({
    sizes: SIZES,
    measure,
    params: { layers: LAYERS },
    print(r) {
      for (const [name, e] of [
        ['first', r.first],
        ['again', r.again],
      ] as const) {
        process.stdout.write(`${String(r.derivations).padStart(7)} ${name.padEnd(5)} ${describe(r.derivations, e)}\n`);
      }
      const perDerivationKb = Math.round((r.serverPeakRssMb * 1024) / r.derivations);
      process.stdout.write(
        `${String(r.derivations).padStart(7)} server peak RSS ${r.serverPeakRssMb} MB ` +
          `(${perDerivationKb} KB per derivation), Redis peak ${r.redisPeakMb} MB\n`,
      );
    },
  });
}

main().catch((err: unknown) => {
  process.stderr.write(
    `hub planning bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
});
