// `node dist/bench/hub.bench.js [--width N] [--layers N] [--spokes N] [--max-jobs N] [--pin]`: the
// build hub on a synthetic flake of width×layers trivial derivations (default 100×10 = 1,000),
// each depending on three of the layer below (shared dependencies everywhere), built by N spokes
// (default 2, each with --max-jobs, default 2) in chroot stores of their own, against
// `nix-build -j<max-jobs>` of the same graph on one machine. This box has 2 cores, so spokes and
// "one machine" share them; `--pin` stands each machine for one core instead: spoke i runs on CPU
// i (with its Nix processes and builders), the reference on CPU 0, and the hub, Redis and the
// cache float over both (so their work is charged to the spokes' cores).
// Never part of `npm test`. Prints a table and one JSON line.
import { randomBytes } from 'node:crypto';
import { cpus, totalmem } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { freePort, hubApi, startSpoke, waitFor, type RunningSpoke } from '../test/helpers/hub.js';
import { createNixEnv } from '../test/helpers/nix.js';
import { cpuPerChildTree, reapedChildrenSeconds } from './lib/proc.js';
import { startRedis } from '../test/helpers/redis.js';
import { runCliOk, startServer } from '../test/helpers/server.js';
import { makeTempDir } from '../test/helpers/tmp.js';

const { values } = parseArgs({
  options: { width: { type: 'string' }, layers: { type: 'string' }, spokes: { type: 'string' }, 'max-jobs': { type: 'string' }, pin: { type: 'boolean' }, 'skip-local': { type: 'boolean' } },
});
const WIDTH = Number(values.width ?? 100);
const LAYERS = Number(values.layers ?? 10);
const SPOKES = Number(values.spokes ?? 2);
const MAX_JOBS = Number(values['max-jobs'] ?? 2);
const PIN = values.pin === true;
const CPUS = cpus().length;

const cleanups: (() => unknown)[] = [];
const t = { after: (fn: () => unknown) => void cleanups.push(fn) };

function graphNix(): string {
  return `{ nonce }:
let
  width = ${WIDTH};
  layers = ${LAYERS};
  mod = a: b: a - (a / b) * b;
  mk = layer: i: derivation ({
    name = "bench-\${toString layer}-\${toString i}";
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "echo \${toString layer}-\${toString i}-\${nonce} > $out" ];
  } // (if layer == 0 then { } else {
    a = node (layer - 1) i;
    b = node (layer - 1) (mod (i * 7 + 1) width);
    c = node (layer - 1) (mod (i * 13 + 5) width);
  }));
  nodes = builtins.genList (layer: builtins.genList (i: mk layer i) width) layers;
  node = layer: i: builtins.elemAt (builtins.elemAt nodes layer) i;
in
builtins.listToAttrs (builtins.genList (i: { name = "top-\${toString i}"; value = node (layers - 1) i; }) width)
`;
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main(): Promise<void> {
  const dir = await makeTempDir(t, 'narhub-hub-bench-');
  const redis = await startRedis(t);
  const hubNix = await createNixEnv(t);
  const listen = `127.0.0.1:${await freePort()}`;
  const server = await startServer(t, { args: ['--listen', listen, '--redis-url', redis.url], env: hubNix.env });
  const api = hubApi(() => server.url, server.adminToken);

  const nonce = randomBytes(6).toString('hex');
  await writeFile(join(dir, 'graph.nix'), graphNix());
  await writeFile(join(dir, 'flake.nix'), `{ outputs = { self }: { checks.x86_64-linux = import ./graph.nix { nonce = "${nonce}"; }; }; }\n`);

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
  await waitFor('spokes to beat', async () => ((await api.get('/spokes')) as { spokes: unknown[] }).spokes.length === SPOKES, 60_000);

  await runCliOk(['project', 'create', 'bench', '--flake', `path:${dir}`, '--server', server.url, '--token', server.adminToken]);
  const cpuBefore = await cpuPerChildTree(process.pid);
  const started = Date.now();
  const e = (await api.post('/projects/bench/evaluations', {})) as { id: number };
  const done = (await waitFor('the evaluation to end', async () => {
    const v = (await api.get(`/evaluations/${e.id}`)) as { status: string; evaluatedAt: string | null; finishedAt: string | null; builds: Record<string, number> };
    return v.status === 'succeeded' || v.status === 'failed' ? v : undefined;
  }, 3_600_000, 500)) as { status: string; evaluatedAt: string; finishedAt: string; builds: Record<string, number> };
  const hubTotal = Date.parse(done.finishedAt) - started;
  // The hub logs how long each step of the evaluation took (lockMs, evalMs, graphMs, uploadMs…).
  const evalSteps = server
    .stdout()
    .split('\n')
    .map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return {}; } })
    .find((l) => typeof l.uploadMs === 'number') ?? {};
  const evalPhases = Object.fromEntries(Object.entries(evalSteps).filter(([k, v]) => /Ms$/.test(k) && typeof v === 'number')) as Record<string, number>;
  // CPU each part used during the evaluation (server with its threads; spoke with its Nix processes and builders).
  const cpuAfter = await cpuPerChildTree(process.pid);
  const cpu: Record<string, number> = {};
  const tenths = (s: number) => Math.round(s * 10) / 10;
  for (const [pid, { cmd, seconds, own }] of cpuAfter) {
    const name = /redis-server/.test(cmd) ? 'redis' : / serve /.test(cmd) ? 'server' : / spoke .*--id (\S+)/.exec(cmd)?.[1];
    if (!name) continue;
    cpu[name] = tenths(seconds - (cpuBefore.get(pid)?.seconds ?? 0));
    // Node itself, apart from its children (Nix evaluations for the server, Nix builds for a spoke).
    if (name !== 'redis') cpu[`${name} (node)`] = tenths(own - (cpuBefore.get(pid)?.own ?? 0));
  }
  const evalTime = Date.parse(done.evaluatedAt) - started;

  // Every job, from BullMQ itself (kept after completion): when it was added, taken and finished, by whom.
  const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue('build-x86_64-linux', { connection: conn });
  const jobs = await queue.getJobs(['completed'], 0, -1);
  const byName = new Map(jobs.map((j) => [String(j.data.drvPath).replace(/^\/nix\/store\/[0-9a-z]{32}-/, '').replace(/\.drv$/, ''), j]));
  const depsOf = (name: string): string[] => {
    const [, l, i] = /^bench-(\d+)-(\d+)$/.exec(name)!.map(Number) as [number, number, number];
    if (l === 0) return [];
    const wrap = (x: number) => x % WIDTH;
    return [...new Set([i, wrap(i * 7 + 1), wrap(i * 13 + 5)])].map((k) => `bench-${l - 1}-${k}`);
  };
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
    const deps = depsOf(name).map((d) => byName.get(d)!);
    // Runnable when the last input finished; a leaf, when its job was added after evaluation.
    const runnable = deps.length > 0 ? Math.max(...deps.map((d) => d.finishedOn!)) : j.timestamp;
    if (deps.length > 0) react.push(j.timestamp - runnable);
    dispatch.push(j.processedOn! - Math.max(runnable, slotFree.get(j.id!) ?? 0));
    busy.push(j.finishedOn! - j.processedOn!);
  }
  await queue.close();
  conn.disconnect();

  // The same graph (another nonce, so nothing is shared) built by Nix alone into a fresh chroot store.
  let local = NaN;
  let localCpu = NaN;
  if (!values['skip-local']) {
    const nix = await createNixEnv(t, { extraConf: ['sandbox-paths = /bin /lib /lib64 /usr'] });
    const reapedBefore = await reapedChildrenSeconds();
    const t0 = Date.now();
    const build = ['nix-build', '--no-out-link', `-j${MAX_JOBS}`, '--store', nix.freshPath('local-store'), join(dir, 'graph.nix'), '--argstr', 'nonce', `local-${nonce}`];
    await nix.run(PIN ? 'taskset' : build[0]!, PIN ? ['-c', '0', ...build] : build.slice(1), { timeoutMs: 3_600_000 });
    local = Date.now() - t0;
    localCpu = Math.round((await reapedChildrenSeconds() - reapedBefore) * 10) / 10;
  }

  const n = jobs.length;
  const result = {
    machine: `${cpus().length} × ${cpus()[0]?.model.trim()}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.version}`,
    derivations: WIDTH * LAYERS,
    jobs: n,
    spokes: SPOKES,
    maxJobs: MAX_JOBS,
    pinned: PIN,
    status: done.status,
    perSpoke: Object.fromEntries([...bySpoke].map(([k, v]) => [k, v.length])),
    dispatchP50Ms: pct(dispatch, 50),
    dispatchP99Ms: pct(dispatch, 99),
    hubReactionP50Ms: pct(react, 50),
    hubReactionP99Ms: pct(react, 99),
    spokeJobMeanMs: Math.round(mean(busy)),
    evalMs: evalTime,
    evalPhases,
    hubTotalMs: hubTotal,
    hubPerDerivationMs: Math.round((hubTotal * SPOKES) / n),
    cpuSeconds: cpu,
    nixBuildMs: local,
    nixBuildCpuSeconds: localCpu,
    nixBuildPerDerivationMs: Math.round((local * SPOKES) / n),
  };
  const rows: [string, string][] = [
    ['derivations / jobs', `${result.derivations} / ${n} (${Object.entries(result.perSpoke).map(([k, v]) => `${k}: ${v}`).join(', ')})`],
    ['dispatch runnable→started p50 / p99', `${result.dispatchP50Ms} ms / ${result.dispatchP99Ms} ms`],
    ['hub reaction (input done → job added) p50 / p99', `${result.hubReactionP50Ms} ms / ${result.hubReactionP99Ms} ms`],
    ['spoke time per job (fetch, build, push), mean', `${result.spokeJobMeanMs} ms`],
    ['evaluation (lock, eval, plan, upload .drvs)', `${(evalTime / 1000).toFixed(1)} s (${Object.entries(evalPhases).map(([k, v]) => `${k.replace(/Ms$/, '')} ${v} ms`).join(', ')})`],
    ['CPU during the evaluation, per process tree', Object.entries(cpu).map(([k, v]) => `${k} ${v} s`).join(', ')],
    [`hub total with ${SPOKES} spokes`, `${(hubTotal / 1000).toFixed(1)} s (${result.hubPerDerivationMs} ms per derivation per spoke)`],
    [`nix-build -j${MAX_JOBS}, one machine${PIN ? ' (CPU 0)' : ''}`, `${(local / 1000).toFixed(1)} s (CPU ${localCpu} s)`],
    ['two spokes against one machine (time ratio)', `${(hubTotal / local).toFixed(2)}×`],
  ];
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(52)} ${v}\n`);
  process.stdout.write(JSON.stringify(result) + '\n');
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`hub bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  });
