// `node dist/bench/cache-scale.bench.js [--sizes 1000,10000,100000] [--seconds 5] [--reps 3] [--work-dir DIR]`:
// the cache at scale (issue 15). For each size N, a fresh data directory is filled with N small
// paths (a few hundred bytes of NAR each) through narhub's own commit path: the native upload of
// the cache domain, in process (validate, compress, store, sign, commit), 16 at a time, on a
// store without fsync (a fixture, not a durability test). Then a real `narhub serve` on that
// directory is measured:
//   - narinfo GET req/s: wrk -t2 -c64 cycling over 1,000 of the cache's narinfos, median of reps;
//     answers other than 200 (the server's 503 load shedding) are counted and reported, and the
//     rate is of the 200s;
//   - missing-paths for 100,000 paths (half present, half not), in requests of 10,000 (the limit);
//     a 503 (load shedding) is counted, and the request sent again after its Retry-After;
//   - the database's size on disk (file, WAL and shared memory);
//   - `narhub reindex` of the whole store (paths per second), with the server running;
//   - the server's RSS after all of it (VmRSS and VmHWM).
// Prints a table with one row per size (a curve); writes every figure as JSON (bench/results/).
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createCacheService } from '../src/cache/cache-service.js';
import { defaultMigrationsDir, migrate } from '../src/db/migrate.js';
import { openDatabase } from '../src/db/open.js';
import { createLocalBlobStore } from '../src/storage/local-blob-store.js';
import { makePath, nativeUploadBody, randomHashPart } from '../test/helpers/build-app.js';
import { startNarhub } from './lib/narhub.js';
import { rmTree } from './lib/proc.js';
import { machine, machineLine, resultsFile } from './lib/report.js';
import { Scope } from './lib/scope.js';
import { fmtBytes, median } from './lib/stats.js';
import { runWrk, writeUrlScript } from './lib/wrk.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1000,10000,100000' },
    seconds: { type: 'string', default: '5' },
    reps: { type: 'string', default: '3' },
    'work-dir': { type: 'string' },
    out: { type: 'string' },
  },
});
const SIZES = values.sizes!.split(',').map(Number);
const SECONDS = Number(values.seconds);
const REPS = Number(values.reps);
const WORK = resolve(values['work-dir'] ?? join(tmpdir(), 'narhub-bench'));
const MISSING_PATHS = 100_000;
const MISSING_BATCH = 10_000;

const log = (m: string) => process.stderr.write(`[cache-scale] ${m}\n`);
const load = () => Math.round(loadavg()[0]! * 10) / 10;

/** Fills `dataDir` with `count` committed paths of cache `main`; their hash parts. */
async function fill(
  dataDir: string,
  count: number,
): Promise<{ paths: string[]; hashParts: string[]; seconds: number }> {
  await mkdir(dataDir, { recursive: true });
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dataDir, 'store'), fsync: false });
  const service = createCacheService({ db, store, keysDir: join(dataDir, 'keys') });
  const { cache } = await service.registry.create('main', { private: false, priority: 40 });
  // What the first `narhub serve` of a fresh directory would have written (this one is not fresh).
  const { token } = service.tokens.create({ cachePattern: '*', permission: 'admin', name: 'bench admin' });
  writeFileSync(join(dataDir, 'admin-token'), `${token}\n`, { mode: 0o600 });
  const hashParts: string[] = [];
  const paths: string[] = [];
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const p = makePath({ name: `scale-${i}` });
      await service.uploadPath(cache, p.hashPart, Readable.from([nativeUploadBody(p)]), { maxSize: 1 << 30 });
      hashParts.push(p.hashPart);
      paths.push(p.storePath);
      if ((i + 1) % 50_000 === 0) log(`  ${i + 1} paths`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const seconds = (performance.now() - started) / 1000;
  await store.close();
  db.close();
  return { paths, hashParts, seconds };
}

function bytesOf(...files: string[]): number {
  return files.reduce((n, f) => n + (existsSync(f) ? statSync(f).size : 0), 0);
}

async function measure(scope: Scope, runDir: string, size: number): Promise<Record<string, number>> {
  const dataDir = join(runDir, `n${size}`, 'data');
  log(`${size}: filling (load ${load()})`);
  const filled = await fill(dataDir, size);
  const narhub = await startNarhub(scope, {
    label: `n${size}`,
    dataDir,
    logFile: join(runDir, `n${size}`, 'server.log'),
  });
  try {
    const sample = filled.hashParts.filter((_, i) => i % Math.max(1, Math.floor(size / 1000)) === 0).slice(0, 1000);
    const script = join(runDir, `n${size}`, 'narinfos.lua');
    await writeUrlScript(
      script,
      sample.map((h) => `/main/${h}.narinfo`),
    );
    const rps: number[] = [];
    const p99: number[] = [];
    let narinfoRefused = 0;
    for (let r = 0; r < REPS; r++) {
      const res = await runWrk({
        url: narhub.url,
        script,
        connections: 64,
        threads: 2,
        seconds: SECONDS,
        allowErrors: true,
      });
      narinfoRefused += res.errors;
      rps.push((res.requestsPerSecond * (res.requests - res.errors)) / Math.max(1, res.requests));
      p99.push(res.p99Ms);
    }
    log(`${size}: narinfo ${rps.map((r) => r.toFixed(0)).join('/')} req/s, ${narinfoRefused} refused (load ${load()})`);

    const asked = Array.from({ length: MISSING_PATHS }, (_, i) =>
      i % 2 === 0 && i / 2 < filled.paths.length ? filled.paths[i / 2]! : `/nix/store/${randomHashPart()}-absent`,
    );
    const present = asked.filter((p) => !p.endsWith('-absent')).length;
    const missingStart = performance.now();
    let missing = 0;
    let missingShed = 0;
    for (let i = 0; i < asked.length; i += MISSING_BATCH) {
      const res = await fetch(`${narhub.url}/api/v1/caches/main/missing-paths`, {
        method: 'POST',
        headers: { authorization: `Bearer ${narhub.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ storePaths: asked.slice(i, i + MISSING_BATCH) }),
      });
      if (res.status === 503) {
        // Load shedding: counted, and the same request again once the server says.
        missingShed++;
        await res.text();
        await sleep(Number(res.headers.get('retry-after') ?? '1') * 1000);
        i -= MISSING_BATCH;
        continue;
      }
      if (!res.ok) throw new Error(`missing-paths: ${res.status} ${await res.text()}`);
      missing += ((await res.json()) as { missing: string[] }).missing.length;
    }
    const missingSeconds = (performance.now() - missingStart) / 1000;
    if (missing !== MISSING_PATHS - present)
      throw new Error(`missing-paths answered ${missing} missing, not ${MISSING_PATHS - present}`);
    log(`${size}: missing-paths ${missingSeconds.toFixed(2)} s (load ${load()})`);

    const dbBytes = bytesOf(...['', '-wal', '-shm'].map((s) => join(dataDir, `narhub.sqlite${s}`)));
    const reindexStart = performance.now();
    await narhub.cli(['reindex', '--cache', 'main']);
    const reindexSeconds = (performance.now() - reindexStart) / 1000;
    log(`${size}: reindex ${(size / reindexSeconds).toFixed(0)} paths/s (load ${load()})`);
    return {
      size,
      fillSeconds: filled.seconds,
      narinfoRps: median(rps),
      narinfoP99Ms: median(p99),
      narinfoRefused,
      missingPathsShed: missingShed,
      missingPathsSeconds: missingSeconds,
      dbBytes,
      reindexPathsPerSecond: size / reindexSeconds,
      rssBytes: await narhub.rss(),
      peakRssBytes: await narhub.peakRss(),
      load: load(),
    };
  } finally {
    await narhub.stop();
    await rmTree(join(runDir, `n${size}`));
  }
}

async function main(): Promise<void> {
  const scope = new Scope();
  process.once('SIGINT', () => void scope.close().then(() => process.exit(130)));
  await mkdir(WORK, { recursive: true });
  const runDir = await mkdtemp(join(WORK, 'cache-scale-'));
  const info = await machine();
  log(machineLine(info));
  const rows: Record<string, number>[] = [];
  try {
    for (const size of SIZES) rows.push(await measure(scope, runDir, size));
  } finally {
    await scope.close();
    await rmTree(runDir);
  }
  const base = rows[0]!;
  const columns = [
    'narinfos',
    'fill (s)',
    'narinfo req/s',
    'vs first',
    'narinfo p99 (ms)',
    'non-200 narinfo / 503 missing-paths',
    'missing-paths 100k (s)',
    'DB size',
    'reindex paths/s',
    'RSS / peak',
    'load',
  ];
  const head = `| ${columns.join(' | ')} |`;
  const lines = rows.map((r) => {
    const cells = [
      String(r.size),
      r.fillSeconds!.toFixed(1),
      r.narinfoRps!.toFixed(0),
      `${(r.narinfoRps! / base.narinfoRps!).toFixed(2)}×`,
      r.narinfoP99Ms!.toFixed(1),
      `${r.narinfoRefused} / ${r.missingPathsShed}`,
      r.missingPathsSeconds!.toFixed(2),
      fmtBytes(r.dbBytes!),
      r.reindexPathsPerSecond!.toFixed(0),
      `${fmtBytes(r.rssBytes!)} / ${fmtBytes(r.peakRssBytes!)}`,
      String(r.load),
    ];
    return `| ${cells.join(' | ')} |`;
  });
  const text = [head, `|${' --- |'.repeat(columns.length)}`, ...lines].join('\n');
  process.stdout.write(`\n${machineLine(info)}\n\n${text}\n`);
  const out = resolve(values.out ?? resultsFile('cache-scale'));
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify({ machine: info, rows, table: text }, null, 2)}\n`);
  process.stdout.write(`\nresults: ${out}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`cache-scale: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
