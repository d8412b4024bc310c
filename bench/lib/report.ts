// What a measurement reports, the one table, and the JSON written beside it.
import { cpus, freemem, loadavg, release, totalmem } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from './proc.js';

/** `info`: a comparison the brief asks for without a target. */
export type Status = 'PASS' | 'FAIL' | 'info' | 'n/a' | 'ERROR';

export interface Result {
  /** Target number from the brief, e.g. `1`, `2 s3`, `4a`. */
  id: string;
  /** The measurement id `--only` selects it by. */
  measurement: string;
  what: string;
  narhub: string;
  reference: string;
  /** narhub ÷ reference (or the figure the target is stated in). */
  ratio: string;
  target: string;
  status: Status;
  /** Raw figures (medians and every sample) for the JSON. */
  figures: Record<string, unknown>;
  note?: string;
}

export function passFail(ok: boolean): Status {
  return ok ? 'PASS' : 'FAIL';
}

export interface Machine {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  freeMemoryGiB: number;
  kernel: string;
  node: string;
  nix: string;
  nginx: string;
  wrk: string;
  zstd: string;
  loadAverageAtStart: number[];
  date: string;
}

async function versionOf(cmd: string, args: string[], pattern: RegExp): Promise<string> {
  try {
    const res = await exec(cmd, args, { timeoutMs: 10_000 });
    return pattern.exec(`${res.stdout}\n${res.stderr}`)?.[1] ?? 'unknown';
  } catch {
    return 'not installed';
  }
}

export async function machine(): Promise<Machine> {
  return {
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    freeMemoryGiB: Math.round((freemem() / 1024 ** 3) * 10) / 10,
    kernel: release(),
    node: process.version,
    nix: await versionOf('nix', ['--version'], /(\d+\.\d+[.\d]*)/),
    nginx: await versionOf('nginx', ['-v'], /nginx\/(\S+)/),
    wrk: await versionOf('wrk', ['-v'], /wrk (\S+)/),
    zstd: await versionOf('zstd', ['--version'], /v(\d+\.\d+\.\d+)/),
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
    date: new Date().toISOString(),
  };
}

export function machineLine(m: Machine): string {
  return (
    `${m.date.slice(0, 16).replace('T', ' ')} UTC · nproc ${m.nproc} (${m.cpuModel}) · ` +
    `${m.memoryGiB} GiB RAM · Linux ${m.kernel} · ` +
    `Node ${m.node} · Nix ${m.nix} · nginx ${m.nginx} · wrk ${m.wrk} · zstd ${m.zstd} · ` +
    `load average at start ${m.loadAverageAtStart.join(' ')}`
  );
}

const COLUMNS: { title: string; get: (r: Result) => string }[] = [
  { title: '#', get: (r) => r.id },
  { title: 'measurement', get: (r) => r.what },
  { title: 'narhub', get: (r) => r.narhub },
  { title: 'reference', get: (r) => r.reference },
  { title: 'ratio', get: (r) => r.ratio },
  { title: 'target', get: (r) => r.target },
  { title: 'result', get: (r) => r.status },
];

/** The one table: plain text, aligned, also valid Markdown. */
export function formatTable(results: Result[]): string {
  const rows = results.map((r) => COLUMNS.map((c) => c.get(r)));
  const widths = COLUMNS.map((c, i) => Math.max(c.title.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(COLUMNS.map((c) => c.title)), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function formatNotes(results: Result[]): string {
  return results
    .filter((r) => r.note !== undefined)
    .map((r) => `${r.id}: ${r.note}`)
    .join('\n');
}

/** `bench/results/<date>-<tag>[-N].json`: the first such file that does not exist yet. */
export function resultsFile(tag: string): string {
  const dir = fileURLToPath(new URL('../../../bench/results/', import.meta.url));
  const day = new Date().toISOString().slice(0, 10);
  for (let i = 1; ; i++) {
    const file = join(dir, `${day}-${tag}${i > 1 ? `-${i}` : ''}.json`);
    if (!existsSync(file)) return file;
  }
}
