// `node dist/bench/small-paths.bench.js [--paths N] [--size BYTES] [--reps N] [--only upload,push,substitute]
//  [--compare LABEL=CLI,…] [--trace] [--work-dir DIR] [--keep]`:
// many small paths, the common case of a CI job (issue 15). A closure of N small paths (default
// 500 of 20 KB each) and one path referring to them all, with stock Nix (Debian's 2.8), side by
// side in one run, alternately, each upload into a fresh cache or directory:
//   upload:       `nix copy --to http://narhub/<cache>?compression=zstd`  against the same copy to
//                 nginx as a plain WebDAV PUT target (`dav_methods PUT`), and `narhub push`;
//   substitution: `nix copy --from http://narhub/<cache>` into a fresh chroot store against the
//                 same from nginx serving the `file://` copy Nix wrote (and signed) itself.
// The machine's load average is recorded with every sample. `--trace` adds two copies to a
// narhub logging its requests (their order, times and overlap), the second under `strace -f -c -w`
// (syscalls per path: fsyncs, renames, futex waits of thread hand-offs), which say where each
// path's time goes.
// Never part of `npm test`. Prints a table; writes every sample as JSON (bench/results/).
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { createNixEnv, generateKey, type NixEnv } from './lib/nix.js';
import { NARHUB_CLI, startNarhub, type Narhub, type RequestRecord } from './lib/narhub.js';
import { startNginx } from './lib/nginx.js';
import { execOk, rmTree, which } from './lib/proc.js';
import { machine, machineLine, resultsFile } from './lib/report.js';
import { closureOf } from './lib/fixtures.js';
import { Scope } from './lib/scope.js';
import { fmtRatio, fmtSeconds, median } from './lib/stats.js';

export const UPLOAD_VS_WEBDAV_TARGET = 1.5;
export const SUBSTITUTE_VS_NGINX_TARGET = 1.1;

const { values } = parseArgs({
  options: {
    paths: { type: 'string', default: '500' },
    size: { type: 'string', default: '20000' },
    reps: { type: 'string', default: '5' },
    trace: { type: 'boolean', default: false },
    'work-dir': { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    only: { type: 'string', default: 'upload,push,substitute' },
    compare: { type: 'string', default: '' },
  },
});
const PATHS = Number(values.paths);
const SIZE = Number(values.size);
const REPS = Number(values.reps);
const ONLY = new Set(values.only!.split(','));
const WORK = resolve(values['work-dir'] ?? join(tmpdir(), 'narhub-bench'));

const log = (m: string) => process.stderr.write(`[small-paths] ${m}\n`);
const load = () => Math.round(loadavg()[0]! * 10) / 10;

/**
 * `count` paths of `size` bytes each (deterministic, about as compressible as text: half
 * hex digits) and one path whose text names them all, so its closure is all of them.
 */
async function closure(nix: NixEnv, count: number, size: number): Promise<{ top: string; paths: string[] }> {
  const files = Array.from({ length: count }, (_, i) => {
    const lines: string[] = [];
    for (let n = 0, len = 0; len < size; n++) {
      const line = `${i} ${n} ${createHash('sha256').update(`${i}/${n}`).digest('hex')}\n`;
      lines.push(line);
      len += line.length;
    }
    return { name: `narhub-small-${size}-${i}`, content: lines.join('').slice(0, size) };
  });
  return closureOf(nix, WORK, `narhub-small-closure-${count}-${size}`, files);
}

interface Sample {
  seconds: number;
  load: number;
}

async function timed(run: () => Promise<number>): Promise<Sample> {
  const before = load();
  const seconds = await run();
  return { seconds, load: Math.max(before, load()) };
}

/** `n` rounds of every step, the order rotating each round, so drift hits them all alike. */
async function rounds(n: number, steps: [string, () => Promise<number>][]): Promise<Record<string, Sample[]>> {
  const out: Record<string, Sample[]> = Object.fromEntries(steps.map(([name]) => [name, []]));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < steps.length; j++) {
      const [name, run] = steps[(i + j) % steps.length]!;
      const sample = await timed(run);
      out[name]!.push(sample);
      log(`round ${i + 1}: ${name} ${fmtSeconds(sample.seconds)} (load ${sample.load})`);
    }
  }
  return out;
}

/** A table row: medians, their ratio against `target` (at most, or below with `strict`), the loads. */
function row(
  what: string,
  mine: Sample[] | undefined,
  refName: string,
  ref: Sample[] | undefined,
  target: number,
  strict = false,
): string[] {
  const ratio = med(mine) / med(ref);
  const pass = strict ? ratio < target : ratio <= target;
  return [
    what,
    fmtSeconds(med(mine)),
    `${refName} ${fmtSeconds(med(ref))}`,
    fmtRatio(ratio),
    `${strict ? '<' : '≤'} ${target}×`,
    pass ? 'PASS' : 'FAIL',
    `${loads(mine)} / ${loads(ref)}`,
  ];
}

const med = (samples: Sample[] | undefined) => median((samples ?? []).map((s) => s.seconds));
const loads = (samples: Sample[] | undefined) => (samples ?? []).map((s) => s.load).join('/');

/**
 * Where the server's time went for one copy: requests by kind (count, median and total time),
 * Nix's order as runs of kinds (`GET ….narinfo 404 ×501, HEAD nar/… ×1, …`), and how many
 * requests were in flight at once (the most, and on average over the copy).
 */
function requestBreakdown(records: RequestRecord[], cache: string): Record<string, unknown> {
  const mine = records.filter((r) => r.url.startsWith(`/${cache}/`) && r.end !== undefined);
  const kind = (r: RequestRecord) => {
    const rest = r.url.slice(cache.length + 2);
    if (rest.startsWith('nar/')) return `${r.method} nar/…`;
    if (rest.endsWith('.narinfo')) return `${r.method} ….narinfo ${r.status ?? ''}`.trim();
    return `${r.method} ${rest}`;
  };
  const byKind = new Map<string, number[]>();
  for (const r of mine) {
    const list = byKind.get(kind(r)) ?? [];
    list.push(r.end! - r.start);
    byKind.set(kind(r), list);
  }
  const runs: [string, number][] = [];
  for (const r of mine) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[0] === kind(r)) last[1]++;
    else runs.push([kind(r), 1]);
  }
  const order = runs
    .slice(0, 16)
    .map(([k, n]) => (n > 1 ? `${k} ×${n}` : k))
    .join(', ');
  const first = Math.min(...mine.map((r) => r.start));
  const last = Math.max(...mine.map((r) => r.end!));
  const busyMs = mine.reduce((a, r) => a + (r.end! - r.start), 0);
  const edges = mine.flatMap((r) => [
    [r.start, 1],
    [r.end!, -1],
  ]);
  edges.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let inFlight = 0;
  let most = 0;
  for (const [, d] of edges) most = Math.max(most, (inFlight += d!));
  return {
    wallMs: last - first,
    requests: mine.length,
    order: runs.length > 16 ? `${order}, … (${runs.length} runs)` : order,
    inFlight: { most, mean: Math.round((busyMs / Math.max(1, last - first)) * 100) / 100 },
    kinds: Object.fromEntries(
      [...byKind].map(([k, ms]) => [
        k,
        { count: ms.length, medianMs: median(ms), totalMs: Math.round(ms.reduce((a, b) => a + b, 0)) },
      ]),
    ),
  };
}

/**
 * `strace -f -c -w` of a process (all its threads) while `run` runs: syscall counts and wall
 * time in them (`-w`: without it strace reports CPU time, and an fsync waiting on the disk
 * looks free).
 */
async function straced(pid: number, run: () => Promise<unknown>): Promise<string> {
  if (which('strace') === undefined) throw new Error('--trace needs strace (apt-get install strace)');
  const child = spawn('strace', ['-f', '-c', '-w', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let out = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  await new Promise((r) => setTimeout(r, 500));
  await run();
  child.kill('SIGINT');
  await new Promise((r) => child.once('close', r));
  return out;
}

/** Calls per path of the syscalls that say where a small path's time goes, from strace's table. */
function syscallsPerPath(table: string, paths: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of ['fsync', 'fdatasync', 'rename', 'openat', 'pwrite64', 'futex', 'epoll_pwait']) {
    const m = new RegExp(`^\\s*[\\d.]+\\s+[\\d.]+\\s+\\d+\\s+(\\d+)(?:\\s+\\d+)?\\s+${name}$`, 'm').exec(table);
    out[name] = m ? Math.round((Number(m[1]) / paths) * 100) / 100 : 0;
  }
  return out;
}

async function main(): Promise<void> {
  const scope = new Scope();
  process.once('SIGINT', () => void scope.close().then(() => process.exit(130)));
  await mkdir(WORK, { recursive: true });
  const runDir = await mkdtemp(join(WORK, 'small-run-'));
  const info = await machine();
  log(machineLine(info));
  try {
    const nix = await createNixEnv(join(runDir, 'nix'));
    log(`fixture: ${PATHS} paths of ${SIZE} bytes and one referring to them all`);
    const { top, paths } = await closure(nix, PATHS, SIZE);
    const narhub = await startNarhub(scope, {
      label: 'small',
      dataDir: join(runDir, 'narhub', 'data'),
      logFile: join(runDir, 'narhub', 'server.log'),
    });
    const nixAuth = await createNixEnv(join(runDir, 'nix-auth'), {
      netrc: [{ host: '127.0.0.1', password: narhub.adminToken }],
    });
    const davRoot = join(runDir, 'dav');
    const dav = await startNginx(scope, { dir: join(runDir, 'nginx-dav'), root: davRoot, dav: true });
    let count = 0;
    const copyTo = async (url: string) =>
      (await nixAuth.run('nix', ['copy', '--to', `${url}?compression=zstd`, top], { timeoutMs: 30 * 60_000 })).seconds;
    const toNarhub = async () => copyTo(await narhub.createCache(`copy-${++count}`));
    const toWebdav = async () => copyTo(`${dav.url}/c${++count}`);
    // Other builds of narhub (`--compare before=/path/to/dist/src/cli/main.js,…`), each its own server.
    const others: [string, () => Promise<number>][] = [];
    for (const spec of values.compare!.split(',').filter((c) => c !== '')) {
      const [label, cli] = spec.split('=') as [string, string];
      const other = await startNarhub(scope, {
        label,
        cli,
        dataDir: join(runDir, label, 'data'),
        logFile: join(runDir, label, 'server.log'),
      });
      const otherNix = await createNixEnv(join(runDir, `nix-${label}`), {
        netrc: [{ host: '127.0.0.1', password: other.adminToken }],
      });
      others.push([
        label,
        async () =>
          (
            await otherNix.run(
              'nix',
              ['copy', '--to', `${await other.createCache(`copy-${++count}`)}?compression=zstd`, top],
              { timeoutMs: 30 * 60_000 },
            )
          ).seconds,
      ]);
    }
    const push = async () => {
      const url = await narhub.createCache(`push-${++count}`);
      return (
        await execOk(process.execPath, [NARHUB_CLI, 'push', url, top, '--token', narhub.adminToken], {
          env: nix.env,
          timeoutMs: 30 * 60_000,
        })
      ).seconds;
    };
    const figures: Record<string, unknown> = { machine: info, paths: paths.length, size: SIZE };
    const table: string[][] = [];

    if (ONLY.has('upload') || ONLY.has('push')) {
      const steps: [string, () => Promise<number>][] = [['webdav', toWebdav]];
      if (ONLY.has('upload')) steps.push(['narhub', toNarhub], ...others);
      if (ONLY.has('push')) steps.push(['push', push]);
      log(`upload: one warm-up of each, then ${REPS} rounds of ${steps.map(([name]) => name).join(', ')}`);
      for (const [, step] of steps) await step();
      const up = await rounds(REPS, steps);
      figures.upload = up;
      const uploads = ONLY.has('upload') ? ['narhub', ...others.map(([label]) => label)] : [];
      for (const name of uploads) {
        const label = name === 'narhub' ? 'narhub' : `narhub (${name})`;
        table.push(
          row(
            `nix copy --to ${label}, ${paths.length} paths`,
            up[name],
            'nginx WebDAV',
            up.webdav,
            UPLOAD_VS_WEBDAV_TARGET,
          ),
        );
      }
      if (ONLY.has('push'))
        table.push(row(`narhub push, ${paths.length} paths`, up.push, 'nix copy to nginx WebDAV', up.webdav, 1, true));
    }

    if (ONLY.has('substitute')) {
      log('substitute: filling narhub and a file:// cache');
      const subUrl = await narhub.createCache('sub');
      await copyTo(subUrl);
      const key = await generateKey(nix, 'small-file-1');
      const fileDir = join(runDir, 'file-cache');
      await nix.run('nix', ['copy', '--to', `file://${fileDir}?compression=zstd&secret-key=${key.secretKeyFile}`, top]);
      const served = await startNginx(scope, { dir: join(runDir, 'nginx-file'), root: fileDir });
      const narhubKey = await narhub.publicKey('sub');
      const stores = join(runDir, 'stores');
      const substitute = async (url: string, publicKey: string) => {
        const store = join(stores, `s${++count}`);
        try {
          return (
            await nix.run(
              'nix',
              ['copy', '--from', url, '--to', store, top, '--option', 'trusted-public-keys', publicKey],
              {
                timeoutMs: 30 * 60_000,
              },
            )
          ).seconds;
        } finally {
          await rmTree(store);
        }
      };
      const fromNarhub = () => substitute(subUrl, narhubKey);
      const fromNginx = () => substitute(served.url, key.publicKey);
      log('substitute: one warm-up of each');
      await fromNarhub();
      await fromNginx();
      log(`substitute: ${REPS} rounds from narhub and from nginx serving the file:// copy`);
      const sub = await rounds(REPS, [
        ['narhub', fromNarhub],
        ['nginx', fromNginx],
      ]);
      figures.substitute = sub;
      table.push(
        row(
          `nix copy --from narhub, ${paths.length} paths`,
          sub.narhub,
          'nginx + file://',
          sub.nginx,
          SUBSTITUTE_VS_NGINX_TARGET,
        ),
      );
    }

    if (values.trace) {
      log('trace: one nix copy to a narhub logging its requests, then one under strace -f -c -w');
      const traced: Narhub = await startNarhub(scope, {
        label: 'traced',
        dataDir: join(runDir, 'traced', 'data'),
        logFile: join(runDir, 'traced', 'server.log'),
        logRequests: true,
      });
      const tracedNix = await createNixEnv(join(runDir, 'nix-traced'), {
        netrc: [{ host: '127.0.0.1', password: traced.adminToken }],
      });
      const copy = async (cache: string) =>
        tracedNix.run('nix', ['copy', '--to', `${await traced.createCache(cache)}?compression=zstd`, top], {
          timeoutMs: 30 * 60_000,
        });
      // strace slows every syscall down, so the request timings come from a copy of their own.
      await copy('logged');
      const breakdown = requestBreakdown(traced.requests(), 'logged');
      // And what a substitution of the same closure asks, into a fresh store.
      const uploadRequests = traced.requests().length;
      const store = join(runDir, 'traced-store');
      const key = await traced.publicKey('logged');
      await tracedNix.run(
        'nix',
        ['copy', '--from', `${traced.url}/logged`, '--to', store, top, '--option', 'trusted-public-keys', key],
        { timeoutMs: 30 * 60_000 },
      );
      await rmTree(store);
      const substitution = requestBreakdown(traced.requests().slice(uploadRequests), 'logged');
      const syscalls = await straced(traced.pid, () => copy('straced'));
      const perPath = syscallsPerPath(syscalls, paths.length);
      figures.trace = { requests: breakdown, substitution, perPath, strace: syscalls };
      process.stdout.write(`\nrequests of one nix copy (server side):\n${JSON.stringify(breakdown, null, 2)}\n`);
      process.stdout.write(`\nrequests of one substitution:\n${JSON.stringify(substitution, null, 2)}\n`);
      process.stdout.write(`\nsyscalls per path (server, all threads):\n${JSON.stringify(perPath)}\n`);
      process.stdout.write(`\nstrace -f -c -w of the server during another copy:\n${syscalls}\n`);
    }

    const head = ['measurement', 'narhub', 'reference', 'ratio', 'target', 'result', 'load (narhub / ref)'];
    const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
    const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
    const text = [line(head), line(widths.map((w) => '-'.repeat(w))), ...table.map(line)].join('\n');
    process.stdout.write(`\n${machineLine(info)}\n\n${text}\n`);
    const out = resolve(values.out ?? resultsFile('small-paths'));
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify({ ...figures, table: text }, null, 2)}\n`);
    process.stdout.write(`\nresults: ${out}\n`);
  } finally {
    await scope.close();
    if (!values.keep) await rmTree(runDir);
    else log(`kept ${runDir}`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`small-paths: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
