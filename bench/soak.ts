// `npm run soak`: load and soak. Stock Nix clients (Debian's Nix 2.8) substitute a closure of
// small paths from narhub over and over, each into a fresh chroot store, while others push new
// paths with `nix copy --to`, for a fixed time. Meanwhile a probe GETs narinfos and NARs and
// times each answer, and the server's RSS and open file descriptors are sampled. Reports latency
// percentiles, errors (target: none), RSS over time and descriptors over time (target: flat).
// Every loop stops by itself at the deadline; everything started is stopped at the end.
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { formatDuration, parseDuration } from '../src/units.js';
import { startNarhub } from './lib/narhub.js';
import { createNixEnv, type NixEnv } from './lib/nix.js';
import { exec, type ExecOptions, type ExecResult, rmTree } from './lib/proc.js';
import { closureOf } from './lib/fixtures.js';
import { Scope } from './lib/scope.js';
import { fmtBytes } from './lib/stats.js';

const USAGE = `usage: npm run soak -- [--duration 10m] [--clients 100] [--pushers 10] [--paths 1000] [--work-dir DIR]

  --duration  how long the load runs (default 10m)
  --clients   Nix clients substituting the closure at once (default 100)
  --pushers   Nix clients pushing new paths at once (default 10)
  --paths     small paths in the closure (default 1000)
  --work-dir  scratch space (default a new directory under ${tmpdir()})`;

interface Options {
  seconds: number;
  clients: number;
  pushers: number;
  paths: number;
  workDir: string | undefined;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10m' },
      clients: { type: 'string', default: '100' },
      pushers: { type: 'string', default: '10' },
      paths: { type: 'string', default: '1000' },
      'work-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const seconds = parseDuration(values.duration);
  const whole = (name: string, text: string) => {
    if (!/^\d+$/.test(text)) throw new Error(`--${name} needs a whole number\n${USAGE}`);
    return Number(text);
  };
  if (seconds === undefined || seconds < 10) throw new Error(`--duration needs at least 10s, e.g. 10m\n${USAGE}`);
  return {
    seconds,
    clients: whole('clients', values.clients),
    pushers: whole('pushers', values.pushers),
    paths: whole('paths', values.paths),
    workDir: values['work-dir'],
  };
}

const log = (line: string) => process.stderr.write(`soak: ${line}\n`);

/** A client run; undefined when it was still going at its time limit and was killed. */
async function run(cmd: string, args: string[], opts: ExecOptions): Promise<ExecResult | undefined> {
  try {
    return await exec(cmd, args, opts);
  } catch (err) {
    if (/timed out after/.test((err as Error).message)) return undefined;
    throw err;
  }
}

/** `count` small paths and one path referring to them all: the closure clients substitute. */
async function closure(nix: NixEnv, dir: string, count: number, tag: string): Promise<string> {
  const files = Array.from({ length: count }, (_, i) => ({
    name: `soak-${tag}-${i}`,
    content: `narhub soak ${tag} path ${i}\n`,
  }));
  return (await closureOf(nix, dir, `soak-closure-${tag}`, files)).top;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function latencyLine(what: string, ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const f = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`);
  return `${what.padEnd(34)} n=${String(s.length).padStart(6)}  p50 ${f(percentile(s, 50))}  p90 ${f(
    percentile(s, 90),
  )}  p99 ${f(percentile(s, 99))}  max ${f(s.at(-1) ?? Number.NaN)}`;
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const scope = new Scope();
  const work = o.workDir ?? (await mkdtemp(join(tmpdir(), 'narhub-soak-')));
  process.on('SIGINT', () => void scope.close().then(() => process.exit(130)));
  try {
    const narhub = await startNarhub(scope, {
      label: 'soak',
      dataDir: join(work, 'data'),
      logFile: join(work, 'server.log'),
    });
    const token = (await narhub.cli(['token', 'create', '--cache', 'main', '--perm', 'write'])).trim();
    const publicKey = await narhub.publicKey('main');
    const host = new URL(narhub.url).hostname;
    const nix = await createNixEnv(join(work, 'nix'), { netrc: [{ host, password: token }] });
    const cache = `${narhub.url}/main`;
    log(`making a closure of ${o.paths} small paths`);
    const top = await closure(nix, work, o.paths, `${Date.now()}`);
    log(`uploading it with nix copy --to ${cache}`);
    await nix.run('nix', ['copy', '--to', cache, top], { timeoutMs: 60 * 60_000 });
    const hashParts = (await nix.run('nix-store', ['-qR', top])).stdout
      .split('\n')
      .filter((l) => l.startsWith('/nix/store/'))
      .map((p) => p.slice('/nix/store/'.length, '/nix/store/'.length + 32));

    const deadline = Date.now() + o.seconds * 1000;
    const errors: string[] = [];
    const substitutions: number[] = [];
    const pushes: number[] = [];
    const narinfoMs: number[] = [];
    const narMs: number[] = [];
    const samples: { t: number; rss: number; fds: number }[] = [];
    const stores = join(work, 'stores');
    await mkdir(stores, { recursive: true });
    let storeCount = 0;
    /** Client runs still going a minute past the deadline are killed, and counted apart from errors. */
    let cut = 0;
    const untilDeadline = () => Math.max(0, deadline - Date.now()) + 60_000;

    const substituter = async () => {
      while (Date.now() < deadline) {
        const store = join(stores, `s${++storeCount}`);
        const res = await run(
          'nix',
          ['copy', '--from', cache, '--to', store, top, '--option', 'trusted-public-keys', publicKey],
          { env: { ...nix.env, XDG_CACHE_HOME: join(store, '.cache') }, timeoutMs: untilDeadline() },
        );
        if (res === undefined) cut++;
        else if (res.code === 0) substitutions.push(res.seconds);
        else errors.push(`substitute: exit ${res.code ?? res.signal}: ${res.stderr.trim().split('\n').at(-1)}`);
        await rmTree(store);
      }
    };
    const pusher = async (n: number) => {
      for (let i = 0; Date.now() < deadline; i++) {
        const file = join(work, `push-${n}-${i}`);
        await writeFile(file, `narhub soak pushed by ${n}, number ${i}, at ${Date.now()}\n`);
        const added = (await nix.run('nix-store', ['--add', file])).stdout.trim();
        // Each pusher has its own client cache: Nix 2.8's SQLite cache is not safe to share.
        const res = await run('nix', ['copy', '--to', cache, added], {
          env: { ...nix.env, XDG_CACHE_HOME: join(work, `push-cache-${n}`) },
          timeoutMs: untilDeadline(),
        });
        if (res === undefined) cut++;
        else if (res.code === 0) pushes.push(res.seconds);
        else errors.push(`push: exit ${res.code ?? res.signal}: ${res.stderr.trim().split('\n').at(-1)}`);
      }
    };
    const probe = async () => {
      for (let i = 0; Date.now() < deadline; i++) {
        const hashPart = hashParts[i % hashParts.length]!;
        let t = performance.now();
        const info = await fetch(`${cache}/${hashPart}.narinfo`).catch((e: Error) => e);
        if (info instanceof Error || info.status !== 200) {
          errors.push(`probe narinfo: ${info instanceof Error ? info.message : info.status}`);
          continue;
        }
        const text = await info.text();
        narinfoMs.push(performance.now() - t);
        const url = /^URL: (.*)$/m.exec(text)?.[1];
        t = performance.now();
        const nar = await fetch(`${cache}/${url}`).catch((e: Error) => e);
        if (nar instanceof Error || nar.status !== 200) {
          errors.push(`probe NAR: ${nar instanceof Error ? nar.message : nar.status}`);
          continue;
        }
        await nar.arrayBuffer();
        narMs.push(performance.now() - t);
        await sleep(50);
      }
    };
    const sampler = async () => {
      const start = Date.now();
      while (Date.now() < deadline) {
        const fds = (await readdir(`/proc/${narhub.pid}/fd`)).length;
        const status = await readFile(`/proc/${narhub.pid}/status`, 'utf8');
        const rss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? Number.NaN) * 1024;
        samples.push({ t: (Date.now() - start) / 1000, rss, fds });
        await sleep(5_000);
      }
    };

    log(`${o.clients} clients substituting, ${o.pushers} pushing, for ${formatDuration(o.seconds)}`);
    await Promise.all([
      ...Array.from({ length: o.clients }, substituter),
      ...Array.from({ length: o.pushers }, (_, n) => pusher(n)),
      probe(),
      sampler(),
    ]);

    const lines = [
      `narhub soak: ${o.clients} Nix clients substituting a closure of ${hashParts.length} paths, ` +
        `${o.pushers} pushing, ${formatDuration(o.seconds)}`,
      latencyLine('probe: narinfo GET', narinfoMs),
      latencyLine('probe: NAR GET', narMs),
      latencyLine(
        `nix copy --from (${hashParts.length} paths)`,
        substitutions.map((s) => s * 1000),
      ),
      latencyLine(
        'nix copy --to (one new path)',
        pushes.map((s) => s * 1000),
      ),
      `errors: ${errors.length}${errors.length > 0 ? ` (first: ${errors[0]})` : ''}; ` +
        `client runs still going a minute past the deadline, killed: ${cut}`,
      'server over time (every 5 s; shown each minute):',
      ...samples
        .filter(
          (s, i) => i === 0 || i === samples.length - 1 || Math.floor(s.t / 60) !== Math.floor(samples[i - 1]!.t / 60),
        )
        .map(
          (s) => `  ${formatDuration(Math.round(s.t)).padStart(6)}  RSS ${fmtBytes(s.rss).padStart(9)}  fds ${s.fds}`,
        ),
    ];
    const rss = samples.map((s) => s.rss);
    const fds = samples.map((s) => s.fds);
    lines.push(
      `RSS: min ${fmtBytes(Math.min(...rss))}, max ${fmtBytes(Math.max(...rss))}, last ${fmtBytes(rss.at(-1)!)}; ` +
        `fds: min ${Math.min(...fds)}, max ${Math.max(...fds)}, last ${fds.at(-1)}`,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
    await writeFile(
      join(work, 'soak.json'),
      JSON.stringify({ options: o, narinfoMs, narMs, substitutions, pushes, errors, samples }, null, 1),
    );
    log(`figures in ${join(work, 'soak.json')}`);
    process.exitCode = errors.length === 0 ? 0 : 1;
  } finally {
    await scope.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
