// `node dist/bench/hub.bench.js [--width N] [--layers N] [--spokes N] [--max-jobs N] [--pin] [--reps N]`: the
// build hub on a synthetic flake of width×layers trivial derivations (default 100×10 = 1,000),
// each depending on three of the layer below (shared dependencies everywhere), built by N spokes
// (default 2, each with --max-jobs, default 2) in chroot stores of their own, against
// `nix-build -j<max-jobs>` of the same graph on one machine. This box has 2 cores, so spokes and
// "one machine" share them; `--pin` stands each machine for one core instead: spoke i runs on CPU
// i (with its Nix processes and builders), the reference on CPU 0, and the hub, Redis and the
// cache float over both (so their work is charged to the spokes' cores).
// Hub and reference run --reps times (default 3), alternately first, each time on a fresh graph;
// the table gives medians. Never part of `npm test`. Prints a table and one JSON line.
import { randomBytes } from 'node:crypto';
import { cpus, totalmem } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { freePort, hubApi, startSpoke, waitFor, type RunningSpoke } from '../test/helpers/hub.js';
import { layeredFlakeNix, layeredGraphNix, layeredInputsOf } from '../test/helpers/layered-graph.js';
import { createNixEnv } from '../test/helpers/nix.js';
import { cpuPerChildTree, reapedChildrenSeconds } from './lib/proc.js';
import { startRedis } from '../test/helpers/redis.js';
import { runCliOk, startServer } from '../test/helpers/server.js';
import { makeTempDir } from '../test/helpers/tmp.js';

const { values } = parseArgs({
  options: {
    width: { type: 'string' },
    layers: { type: 'string' },
    spokes: { type: 'string' },
    'max-jobs': { type: 'string' },
    pin: { type: 'boolean' },
    'skip-local': { type: 'boolean' },
    reps: { type: 'string' },
  },
});
const WIDTH = Number(values.width ?? 100);
const LAYERS = Number(values.layers ?? 10);
const SPOKES = Number(values.spokes ?? 2);
const MAX_JOBS = Number(values['max-jobs'] ?? 2);
const PIN = values.pin === true;
const REPS = Number(values.reps ?? 3);
const SKIP_LOCAL = values['skip-local'] === true;
const CPUS = cpus().length;

const cleanups: (() => unknown)[] = [];
const t = { after: (fn: () => unknown) => void cleanups.push(fn) };

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const tenths = (s: number) => Math.round(s * 10) / 10;

interface HubRun {
  status: string;
  jobs: number;
  perSpoke: Record<string, number>;
  dispatchP50Ms: number;
  dispatchP99Ms: number;
  hubReactionP50Ms: number;
  hubReactionP99Ms: number;
  spokeJobMeanMs: number;
  evalMs: number;
  evalPhases: Record<string, number>;
  hubTotalMs: number;
  cpuSeconds: Record<string, number>;
}

async function main(): Promise<void> {
  const dir = await makeTempDir(t, 'narhub-hub-bench-');
  const redis = await startRedis(t);
  const hubNix = await createNixEnv(t);
  const listen = `127.0.0.1:${await freePort()}`;
  const server = await startServer(t, { args: ['--listen', listen, '--redis-url', redis.url], env: hubNix.env });
  const api = hubApi(() => server.url, server.adminToken);
  await writeFile(join(dir, 'graph.nix'), layeredGraphNix(WIDTH, LAYERS));
  const writeFlake = (nonce: string) => writeFile(join(dir, 'flake.nix'), layeredFlakeNix(nonce));
  await writeFlake('unused');

  const spokes: RunningSpoke[] = [];
  for (let i = 0; i < SPOKES; i++) {
    const nix = await createNixEnv(t);
    spokes.push(
      startSpoke(t, {
        id: `bench-${i}`,
        hubUrl: server.url,
        redisUrl: redis.url,
        token: server.adminToken,
        store: nix.freshPath('store'),
        env: nix.env,
        extraArgs: ['--max-jobs', String(MAX_JOBS)],
        ...(PIN ? { cpu: i % CPUS } : {}),
      }),
    );
  }
  await waitFor(
    'spokes to beat',
    async () => ((await api.get('/spokes')) as { spokes: unknown[] }).spokes.length === SPOKES,
    60_000,
  );
  await runCliOk([
    'project',
    'create',
    'bench',
    '--flake',
    `path:${dir}`,
    '--server',
    server.url,
    '--token',
    server.adminToken,
  ]);
  const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue('build-x86_64-linux', { connection: conn });
  t.after(async () => {
    await queue.close();
    conn.disconnect();
  });

  /** One evaluation of the graph with a fresh nonce (nothing built before), built by the spokes. */
  async function hubRun(nonce: string): Promise<HubRun> {
    await writeFlake(nonce);
    const cpuBefore = await cpuPerChildTree(process.pid);
    const started = Date.now();
    const e = (await api.post('/projects/bench/evaluations', {})) as { id: number };
    const done = (await waitFor(
      'the evaluation to end',
      async () => {
        const v = (await api.get(`/evaluations/${e.id}`)) as {
          status: string;
          evaluatedAt: string | null;
          finishedAt: string | null;
        };
        return v.status === 'succeeded' || v.status === 'failed' ? v : undefined;
      },
      3_600_000,
      500,
    )) as { status: string; evaluatedAt: string; finishedAt: string };
    const hubTotalMs = Date.parse(done.finishedAt) - started;
    // The hub logs how long each step of the evaluation took (lockMs, evalMs, graphMs, uploadMs…).
    const evalSteps =
      server
        .stdout()
        .split('\n')
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return {};
          }
        })
        .filter((l) => l.evaluation === e.id && typeof l.uploadMs === 'number')
        .pop() ?? {};
    const evalPhases = Object.fromEntries(
      Object.entries(evalSteps).filter(([k, v]) => /Ms$/.test(k) && k !== 'ms' && typeof v === 'number'),
    ) as Record<string, number>;
    // CPU each part used during the evaluation (server with its threads; spoke with its Nix processes and builders).
    const cpuAfter = await cpuPerChildTree(process.pid);
    const cpuSeconds: Record<string, number> = {};
    for (const [pid, { cmd, seconds, own }] of cpuAfter) {
      const name = /redis-server/.test(cmd)
        ? 'redis'
        : / serve /.test(cmd)
          ? 'server'
          : / spoke .*--id (\S+)/.exec(cmd)?.[1];
      if (!name) continue;
      cpuSeconds[name] = tenths(seconds - (cpuBefore.get(pid)?.seconds ?? 0));
      // Node itself, apart from its children (Nix evaluations for the server, Nix builds for a spoke).
      if (name !== 'redis') cpuSeconds[`${name} (node)`] = tenths(own - (cpuBefore.get(pid)?.own ?? 0));
    }

    // Every job of this run, from BullMQ itself (kept after completion): when it was added, taken and
    // finished, by whom.
    const jobs = await queue.getJobs(['completed'], 0, -1);
    const byName = new Map(
      jobs.map((j) => [
        String(j.data.drvPath)
          .replace(/^\/nix\/store\/[0-9a-z]{32}-/, '')
          .replace(/\.drv$/, ''),
        j,
      ]),
    );
    const dispatch: number[] = [];
    const react: number[] = [];
    const busy: number[] = [];
    const bySpoke = new Map<string, typeof jobs>();
    for (const j of jobs) bySpoke.set(j.processedBy ?? '?', [...(bySpoke.get(j.processedBy ?? '?') ?? []), j]);
    // When each job could have started on its spoke at the earliest: when one of the spoke's
    // --max-jobs slots was free (the one freed first is the one it took).
    const slotFree = new Map<string, number>();
    for (const list of bySpoke.values()) {
      list.sort((a, b) => a.processedOn! - b.processedOn!);
      const slots: number[] = new Array<number>(MAX_JOBS).fill(0);
      for (const j of list) {
        const k = slots.indexOf(Math.min(...slots));
        slotFree.set(j.id!, slots[k]!);
        slots[k] = j.finishedOn!;
      }
    }
    for (const [name, j] of byName) {
      const deps = layeredInputsOf(name, WIDTH).map((d) => byName.get(d)!);
      // Runnable when the last input finished; a leaf, when its job was added after evaluation.
      const runnable = deps.length > 0 ? Math.max(...deps.map((d) => d.finishedOn!)) : j.timestamp;
      if (deps.length > 0) react.push(j.timestamp - runnable);
      dispatch.push(j.processedOn! - Math.max(runnable, slotFree.get(j.id!) ?? 0));
      busy.push(j.finishedOn! - j.processedOn!);
    }
    // The next run's names are the same: its jobs must be the only ones kept.
    await queue.clean(0, 0, 'completed');
    return {
      status: done.status,
      jobs: jobs.length,
      perSpoke: Object.fromEntries([...bySpoke].map(([k, v]) => [k, v.length])),
      dispatchP50Ms: pct(dispatch, 50),
      dispatchP99Ms: pct(dispatch, 99),
      hubReactionP50Ms: pct(react, 50),
      hubReactionP99Ms: pct(react, 99),
      spokeJobMeanMs: Math.round(mean(busy)),
      evalMs: Date.parse(done.evaluatedAt) - started,
      evalPhases,
      hubTotalMs,
      cpuSeconds,
    };
  }

  /** The same graph (another nonce, so nothing is shared) built by Nix alone into a fresh chroot store. */
  async function localRun(nonce: string): Promise<{ ms: number; cpuSeconds: number }> {
    const nix = await createNixEnv(t, { extraConf: ['sandbox-paths = /bin /lib /lib64 /usr'] });
    const reapedBefore = await reapedChildrenSeconds();
    const t0 = Date.now();
    const build = [
      'nix-build',
      '--no-out-link',
      `-j${MAX_JOBS}`,
      '--store',
      nix.freshPath('local-store'),
      join(dir, 'graph.nix'),
      '--argstr',
      'nonce',
      `local-${nonce}`,
    ];
    await nix.run(PIN ? 'taskset' : build[0]!, PIN ? ['-c', '0', ...build] : build.slice(1), { timeoutMs: 3_600_000 });
    return { ms: Date.now() - t0, cpuSeconds: tenths((await reapedChildrenSeconds()) - reapedBefore) };
  }

  // Alternately hub first and Nix first, so that neither always runs in the same part of the
  // machine's ups and downs; each pair's ratio is taken from runs a minute apart.
  const reps: { hub: HubRun; local: { ms: number; cpuSeconds: number } | undefined }[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    const nonce = randomBytes(6).toString('hex');
    let local: { ms: number; cpuSeconds: number } | undefined;
    if (!SKIP_LOCAL && rep % 2 === 1) local = await localRun(nonce);
    const hub = await hubRun(nonce);
    if (!SKIP_LOCAL && rep % 2 === 0) local = await localRun(nonce);
    reps.push({ hub, local });
    const ratio = local ? `${(hub.hubTotalMs / local.ms).toFixed(2)}×` : '—';
    const hubCpu = Object.entries(hub.cpuSeconds)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    process.stdout.write(
      `run ${rep + 1}/${REPS}: hub ${(hub.hubTotalMs / 1000).toFixed(1)} s ` +
        `(evaluation ${(hub.evalMs / 1000).toFixed(1)} s; CPU ${hubCpu}), ` +
        `nix-build ${local ? `${(local.ms / 1000).toFixed(1)} s (CPU ${local.cpuSeconds} s)` : '—'}, ratio ${ratio}\n`,
    );
  }

  const median = (xs: number[]) => pct(xs, 50);
  const hubs = reps.map((r) => r.hub);
  const ratios = reps.flatMap((r) => (r.local ? [r.hub.hubTotalMs / r.local.ms] : []));
  const result = {
    machine:
      `${cpus().length} × ${cpus()[0]?.model.trim()}, ` +
      `${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.version}`,
    derivations: WIDTH * LAYERS,
    spokes: SPOKES,
    maxJobs: MAX_JOBS,
    pinned: PIN,
    reps: reps.map((r) => ({
      ...r.hub,
      nixBuildMs: r.local?.ms ?? null,
      nixBuildCpuSeconds: r.local?.cpuSeconds ?? null,
    })),
    medianHubTotalMs: median(hubs.map((h) => h.hubTotalMs)),
    medianNixBuildMs: median(reps.flatMap((r) => (r.local ? [r.local.ms] : []))),
    medianRatio: median(ratios),
  };
  const last = hubs[hubs.length - 1]!;
  const rows: [string, string][] = [
    [
      'derivations / jobs (last run)',
      `${result.derivations} / ${last.jobs} (${Object.entries(last.perSpoke)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')})`,
    ],
    [
      'dispatch runnable→started p50 / p99 (medians)',
      `${median(hubs.map((h) => h.dispatchP50Ms))} ms / ${median(hubs.map((h) => h.dispatchP99Ms))} ms`,
    ],
    [
      'hub reaction (input done → job added) p50 / p99',
      `${median(hubs.map((h) => h.hubReactionP50Ms))} ms / ${median(hubs.map((h) => h.hubReactionP99Ms))} ms`,
    ],
    ['spoke time per job (fetch, build, push), mean', `${median(hubs.map((h) => h.spokeJobMeanMs))} ms`],
    [
      'evaluation (lock, eval, plan, upload .drvs)',
      `${(median(hubs.map((h) => h.evalMs)) / 1000).toFixed(1)} s (last: ${Object.entries(last.evalPhases)
        .map(([k, v]) => `${k.replace(/Ms$/, '')} ${v} ms`)
        .join(', ')})`,
    ],
    [`hub total with ${SPOKES} spokes, median of ${REPS}`, `${(result.medianHubTotalMs / 1000).toFixed(1)} s`],
    [
      `nix-build -j${MAX_JOBS}, one machine${PIN ? ' (CPU 0)' : ''}, median`,
      `${(result.medianNixBuildMs / 1000).toFixed(1)} s`,
    ],
    [
      "two spokes against one machine, median of the runs' ratios",
      `${result.medianRatio.toFixed(2)}× (${ratios.map((r) => r.toFixed(2)).join(', ')})`,
    ],
  ];
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(58)} ${v}\n`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`hub bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  });
