// `npm run bench`: narhub against its references (nginx, zstd, Nix itself, s3rver), side by side
// in one run on the same data, on this machine. Prints one table; writes the same figures as JSON.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchContext, MEASUREMENTS, type MeasurementId, type Options } from './lib/context.js';
import { rmTree, which } from './lib/proc.js';
import { formatNotes, formatTable, machine, machineLine, type Result } from './lib/report.js';
import { Scope } from './lib/scope.js';
import { fmtBytes } from './lib/stats.js';
import { measureIngest } from './ingest.js';
import { measureMemory } from './memory.js';
import { measureNarGet, measureNarGetS3 } from './nar-get.js';
import { measureNarinfo } from './narinfo.js';
import { measureNarinfoUnderPush } from './narinfo-under-push.js';
import { measureSubstitute } from './substitute.js';
import { measurePullThrough } from './pull-through.js';

const USAGE = `usage: npm run bench -- [--quick] [--only NAME,…] [--out FILE] [--reps N] [--work-dir DIR] [--keep]
                           [--cpu-prof]

  --quick      small data (200 MB path, 100 small paths, 500 MB memory test), fewer repetitions
  --only       some of: ${MEASUREMENTS.join(', ')}
  --out        JSON results file (default bench/results/<date>.json)
  --reps       repetitions of every measurement (default 3-5, quick 1-3)
  --work-dir   fixtures cache and scratch space (default ${join(tmpdir(), 'narhub-bench')})
  --keep       keep this run's scratch directory (servers' data, logs)
  --cpu-prof   run narhub under --cpu-prof; profiles land in the run directory (implies --keep)`;

interface Measurement {
  id: MeasurementId;
  run: (ctx: BenchContext) => Promise<Result[]>;
  /** Tools it cannot run without. */
  needs: string[];
  /** What its error row says it is (brief's number). */
  label: string;
}

/** In run order: the served data first, the heavy uploads last. */
const ALL: Measurement[] = [
  { id: 'narinfo', run: measureNarinfo, needs: ['nix', 'nginx', 'wrk'], label: '1' },
  { id: 'nar-get', run: measureNarGet, needs: ['nix', 'nginx', 'curl'], label: '2' },
  { id: 'substitute', run: measureSubstitute, needs: ['nix', 'nginx'], label: '3' },
  { id: 'pull-through', run: measurePullThrough, needs: ['nix', 'nginx'], label: '7' },
  { id: 'narinfo-under-push', run: measureNarinfoUnderPush, needs: ['nix', 'nginx', 'wrk'], label: '6' },
  { id: 'ingest', run: measureIngest, needs: ['nix', 'zstd'], label: '4' },
  { id: 'nar-get-s3', run: measureNarGetS3, needs: ['nix', 'curl'], label: '2 S3' },
  { id: 'memory', run: measureMemory, needs: ['nix', 'curl'], label: '5' },
];

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
      reps: { type: 'string' },
      'work-dir': { type: 'string' },
      keep: { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const only = (values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '') ?? [...MEASUREMENTS]) as MeasurementId[];
  for (const name of only) {
    if (!(MEASUREMENTS as readonly string[]).includes(name))
      throw new Error(`--only: unknown measurement ${name}; known: ${MEASUREMENTS.join(', ')}`);
  }
  const reps = values.reps === undefined ? undefined : Number(values.reps);
  if (reps !== undefined && (!Number.isInteger(reps) || reps < 1)) throw new Error('--reps must be a positive integer');
  const quick = values.quick ?? false;
  return {
    quick,
    only,
    out: values.out,
    workDir: resolve(values['work-dir'] ?? join(tmpdir(), 'narhub-bench')),
    reps,
    keep: (values.keep ?? false) || (values['cpu-prof'] ?? false),
    cpuProf: values['cpu-prof'] ?? false,
    bigBytes: quick ? 200e6 : 1e9,
    smallCount: quick ? 100 : 1000,
    hugeBytes: quick ? 500e6 : 4e9,
    wrkSeconds: quick ? 3 : 5,
  };
}

function defaultOut(quick: boolean): string {
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  const day = new Date().toISOString().slice(0, 10);
  for (let i = 1; ; i++) {
    const file = join(dir, `${day}${quick ? '-quick' : ''}${i > 1 ? `-${i}` : ''}.json`);
    if (!existsSync(file)) return file;
  }
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  await mkdir(options.workDir, { recursive: true });
  const fs = await statfs(options.workDir);
  const free = fs.bavail * fs.bsize;
  const needed = options.hugeBytes * 3 + options.bigBytes * 6;
  if (options.only.includes('memory') && free < needed) {
    process.stderr.write(
      `bench: only ${fmtBytes(free)} free under ${options.workDir}; the memory measurement needs about ` +
        `${fmtBytes(needed)}\n`,
    );
  }
  const runDir = await mkdtemp(join(options.workDir, 'run-'));
  const scope = new Scope();
  const ctx = new BenchContext(options, scope, runDir);
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    process.stderr.write('bench: interrupted, stopping servers\n');
    void scope.close().then(() => process.exit(130));
  });

  const info = await machine();
  ctx.log(`${machineLine(info)}`);
  ctx.log(`run directory ${runDir}${options.quick ? ' (quick)' : ''}`);
  const results: Result[] = [];
  for (const m of ALL.filter((m) => options.only.includes(m.id))) {
    const missing = m.needs.filter((tool) => which(tool) === undefined);
    if (missing.length > 0) {
      results.push(errorRow(m, `needs ${missing.join(', ')} (apt-get install -y ${missing.join(' ')})`));
      continue;
    }
    ctx.log(`=== ${m.id}`);
    try {
      const rows = await m.run(ctx);
      results.push(...rows);
      process.stderr.write(`${formatTable(rows)}\n`);
    } catch (err) {
      if (interrupted) break;
      ctx.log(`${m.id} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      results.push(errorRow(m, err instanceof Error ? err.message.split('\n')[0]! : String(err)));
    }
  }
  await scope.close();

  const table = formatTable(results);
  const notes = formatNotes(results);
  process.stdout.write(`\n${machineLine(info)}\n\n${table}\n${notes === '' ? '' : `\n${notes}\n`}`);
  const out = resolve(options.out ?? defaultOut(options.quick));
  await mkdir(dirname(out), { recursive: true });
  const { only: _only, ...settings } = options;
  await writeFile(
    out,
    JSON.stringify({ machine: info, options: { ...settings, measurements: options.only }, table, results }, null, 2) +
      '\n',
  );
  process.stdout.write(`\nresults: ${out}\n`);
  if (options.keep) process.stdout.write(`run directory kept: ${runDir}\n`);
  else await rmTree(runDir);
  return results.some((r) => r.status === 'ERROR') ? 1 : 0;
}

function errorRow(m: Measurement, message: string): Result {
  return {
    id: m.label,
    measurement: m.id,
    what: m.id,
    narhub: '—',
    reference: '—',
    ratio: '—',
    target: '—',
    status: 'ERROR',
    figures: {},
    note: message,
  };
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
