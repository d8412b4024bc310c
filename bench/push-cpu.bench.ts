// `node dist/bench/push-cpu.bench.js [--mb 125] [--concurrent 8] [--reps 2] [--work-dir DIR]`:
// the server's CPU per ingested GB (issue 15). N `narhub push`es run at once, each of the same
// NAR (about `--mb` MB of /usr/lib, real mixed content) into a fresh cache of one `narhub serve`,
// in two modes, alternately (a b, b a, …) in one run:
//   client: the default, each client compresses its NAR (zstd level 3, multi-threaded) and the
//           server decodes, validates and hashes it, and stores the client's frame as sent;
//   server: `--compression none`, the raw NAR, which the server validates and compresses itself
//           (the reference: how every push worked before).
// Per run: the server's CPU time (user + system, all threads, from /proc/<pid>/stat) per GB
// (10^9 bytes) of NAR ingested, the clients' CPU (every `narhub push` with its `nix-store
// --dump`) per GB, the aggregate rate (NAR bytes of all pushes / wall time from the first start
// to the last exit), and the stored file's size. Every push has a time limit; the bench stops
// by itself. Never part of `npm test`. Prints a table; writes every sample as JSON (bench/results/).
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { usrLibPath } from './lib/fixtures.js';
import { NARHUB_CLI, startNarhub, type Narhub } from './lib/narhub.js';
import { createNixEnv } from './lib/nix.js';
import { execOk, reapedChildrenSeconds, rmTree } from './lib/proc.js';
import { machine, machineLine, resultsFile } from './lib/report.js';
import { Scope } from './lib/scope.js';
import { fmtRatio, median } from './lib/stats.js';

export const SERVER_CPU_PER_GB_TARGET = 2.5;

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '125' },
    concurrent: { type: 'string', default: '8' },
    reps: { type: 'string', default: '2' },
    'work-dir': { type: 'string' },
    out: { type: 'string' },
  },
});
const BYTES = Number(values.mb) * 1_000_000;
const CONCURRENT = Number(values.concurrent);
const REPS = Number(values.reps);
const WORK = resolve(values['work-dir'] ?? join(tmpdir(), 'narhub-bench'));
const PUSH_TIMEOUT_MS = 20 * 60_000;

type Mode = 'client' | 'server';
const MODES: Record<Mode, string[]> = { client: [], server: ['--compression', 'none'] };

interface Sample {
  mode: Mode;
  rep: number;
  seconds: number;
  narBytes: number;
  serverCpu: number;
  clientCpu: number;
  serverCpuPerGB: number;
  clientCpuPerGB: number;
  aggregateMBps: number;
  fileSize: number;
  load: number;
}

const log = (m: string) => process.stderr.write(`[push-cpu] ${m}\n`);
const load = () => Math.round(loadavg()[0]! * 10) / 10;

async function fileSizeOf(narhub: Narhub, cache: string, path: string): Promise<number> {
  const hash = path.slice('/nix/store/'.length, '/nix/store/'.length + 32);
  const text = await (await fetch(`${narhub.url}/${cache}/${hash}.narinfo`)).text();
  const m = /^FileSize: (\d+)$/m.exec(text);
  if (!m) throw new Error(`no FileSize in the narinfo of ${path} in ${cache}:\n${text}`);
  return Number(m[1]);
}

async function main(): Promise<void> {
  const scope = new Scope();
  process.once('SIGINT', () => void scope.close().then(() => process.exit(130)));
  await mkdir(WORK, { recursive: true });
  const runDir = await mkdtemp(join(WORK, 'push-cpu-'));
  const info = await machine();
  log(machineLine(info));
  const samples: Sample[] = [];
  try {
    const nix = await createNixEnv(join(runDir, 'nix'));
    const nar = await usrLibPath(nix, WORK, BYTES);
    log(`NAR of ${nar.path}: ${nar.narSize} bytes, ${CONCURRENT} pushes at once, ${REPS} runs of each mode`);
    const narhub = await startNarhub(scope, {
      label: 'push-cpu',
      dataDir: join(runDir, 'data'),
      logFile: join(runDir, 'server.log'),
    });
    let count = 0;
    const run = async (mode: Mode, rep: number): Promise<Sample> => {
      const caches: string[] = [];
      for (let i = 0; i < CONCURRENT; i++) {
        const name = `${mode}-${++count}`;
        await narhub.createCache(name);
        caches.push(name);
      }
      const cpu0 = await narhub.cpuSeconds();
      const client0 = await reapedChildrenSeconds();
      const started = performance.now();
      await Promise.all(
        caches.map((c) =>
          execOk(
            process.execPath,
            [NARHUB_CLI, 'push', `${narhub.url}/${c}`, nar.path, '--token', narhub.adminToken, ...MODES[mode]],
            { env: nix.env, timeoutMs: PUSH_TIMEOUT_MS },
          ),
        ),
      );
      const seconds = (performance.now() - started) / 1000;
      const serverCpu = (await narhub.cpuSeconds()) - cpu0;
      const clientCpu = (await reapedChildrenSeconds()) - client0;
      const narBytes = nar.narSize * CONCURRENT;
      const sample: Sample = {
        mode,
        rep,
        seconds,
        narBytes,
        serverCpu,
        clientCpu,
        serverCpuPerGB: serverCpu / (narBytes / 1e9),
        clientCpuPerGB: clientCpu / (narBytes / 1e9),
        aggregateMBps: narBytes / 1e6 / seconds,
        fileSize: await fileSizeOf(narhub, caches[0]!, nar.path),
        load: load(),
      };
      log(
        `${mode} #${rep}: ${seconds.toFixed(1)} s, ${sample.aggregateMBps.toFixed(0)} MB/s, server ` +
          `${sample.serverCpuPerGB.toFixed(2)} s/GB, clients ${sample.clientCpuPerGB.toFixed(2)} s/GB ` +
          `(load ${sample.load})`,
      );
      return sample;
    };
    // A warm-up of each (page cache, JIT, codec threads), not counted.
    await run('client', -1);
    await run('server', -1);
    for (let rep = 0; rep < REPS; rep++) {
      const order: Mode[] = rep % 2 === 0 ? ['client', 'server'] : ['server', 'client'];
      for (const mode of order) samples.push(await run(mode, rep));
    }
  } finally {
    await scope.close();
    await rmTree(runDir);
  }

  const of = (mode: Mode, key: keyof Sample) =>
    median(samples.filter((s) => s.mode === mode).map((s) => s[key] as number));
  const columns = [
    'mode',
    'server CPU / GB',
    'clients CPU / GB',
    'aggregate rate',
    'wall (s)',
    'stored file',
    'runs (server s/GB)',
  ];
  const lines = (['client', 'server'] as Mode[]).map((mode) =>
    [
      mode === 'client' ? 'client compresses (zstd -3, multi-threaded)' : 'server compresses (`--compression none`)',
      `${of(mode, 'serverCpuPerGB').toFixed(2)} s`,
      `${of(mode, 'clientCpuPerGB').toFixed(2)} s`,
      `${of(mode, 'aggregateMBps').toFixed(0)} MB/s`,
      of(mode, 'seconds').toFixed(1),
      `${(of(mode, 'fileSize') / 1e6).toFixed(1)} MB`,
      samples
        .filter((s) => s.mode === mode)
        .map((s) => s.serverCpuPerGB.toFixed(2))
        .join(' / '),
    ].join(' | '),
  );
  const ratio = of('client', 'serverCpuPerGB') / of('server', 'serverCpuPerGB');
  const text = [
    `| ${columns.join(' | ')} |`,
    `|${' --- |'.repeat(columns.length)}`,
    ...lines.map((l) => `| ${l} |`),
    '',
    `server CPU per GB, client-compressed / server-compressed: ${fmtRatio(ratio)}; ` +
      `target < ${SERVER_CPU_PER_GB_TARGET} s/GB: ` +
      `${of('client', 'serverCpuPerGB') < SERVER_CPU_PER_GB_TARGET ? 'PASS' : 'FAIL'}`,
  ].join('\n');
  process.stdout.write(`\n${machineLine(info)}\n${CONCURRENT} concurrent pushes of ${BYTES / 1e6} MB\n\n${text}\n`);
  const out = resolve(values.out ?? resultsFile('push-cpu'));
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify({ machine: info, concurrent: CONCURRENT, samples, table: text }, null, 2)}\n`);
  process.stdout.write(`\nresults: ${out}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`push-cpu: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
