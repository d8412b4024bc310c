// 1. narinfo GET throughput at 64 connections: wrk cycling over the small paths' narinfos,
// narhub against nginx serving the very same files from narhub's storage directory.
import { cpus } from 'node:os';
import { join } from 'node:path';
import type { BenchContext } from './lib/context.js';
import { passFail, type Result } from './lib/report.js';
import { alternate, fmtMs, fmtRatio, fmtRps, median } from './lib/stats.js';
import { runWrk, writeUrlScript, type WrkResult } from './lib/wrk.js';

interface Run extends WrkResult {
  cpuUsPerRequest: number;
}

const NARINFO_TARGET = 0.6;

export async function measureNarinfo(ctx: BenchContext): Promise<Result[]> {
  const s = await ctx.served();
  const script = join(ctx.runDir, 'narinfo.lua');
  await writeUrlScript(script, s.narinfoPaths);

  // Same bytes from both, or the comparison means nothing.
  const probe = s.narinfoPaths[0]!;
  const [a, b] = await Promise.all([fetch(s.narhub.url + probe), fetch(s.nginx.url + probe)]);
  const [ta, tb] = await Promise.all([a.text(), b.text()]);
  if (a.status !== 200 || b.status !== 200 || ta !== tb)
    throw new Error(`narhub and nginx disagree on ${probe}: ${a.status}/${b.status}`);

  // CPU time per request besides throughput: it depends far less on what else the machine runs.
  const wrk = async (url: string, cpu: () => Promise<number>, seconds = ctx.options.wrkSeconds): Promise<Run> => {
    const before = await cpu();
    const result = await runWrk({ url, script, connections: 64, threads: 2, seconds });
    return { ...result, cpuUsPerRequest: (((await cpu()) - before) * 1e6) / result.requests };
  };
  const narhub = () => wrk(s.narhub.url, () => s.narhub.cpuSeconds());
  const nginx = () => wrk(s.nginx.url, () => s.nginx.cpuSeconds());
  ctx.log('narinfo: warming both servers');
  await wrk(s.narhub.url, () => s.narhub.cpuSeconds(), 3);
  await wrk(s.nginx.url, () => s.nginx.cpuSeconds(), 3);
  const n = ctx.reps(5, 2);
  ctx.log(`narinfo: ${n} × ${ctx.options.wrkSeconds} s of wrk -t2 -c64 on each, alternately`);
  const runs = await alternate(n, narhub, nginx);
  const rps = (rs: Run[]) => median(rs.map((r) => r.requestsPerSecond));
  const p99 = (rs: Run[]) => median(rs.map((r) => r.p99Ms));
  const cpu = (rs: Run[]) => median(rs.map((r) => r.cpuUsPerRequest));
  const ratio = rps(runs.a) / rps(runs.b);
  return [
    {
      id: '1',
      measurement: 'narinfo',
      what: `narinfo GET, wrk -c64 over ${s.narinfoPaths.length} narinfos`,
      narhub: `${fmtRps(rps(runs.a))}, p99 ${fmtMs(p99(runs.a))}`,
      reference: `nginx ${fmtRps(rps(runs.b))}, p99 ${fmtMs(p99(runs.b))}`,
      ratio: fmtRatio(ratio),
      target: `≥ ${NARINFO_TARGET.toFixed(2)}× nginx`,
      status: passFail(ratio >= NARINFO_TARGET),
      figures: {
        narinfos: s.narinfoPaths.length,
        narhubReqPerSec: rps(runs.a),
        nginxReqPerSec: rps(runs.b),
        narhubP99Ms: p99(runs.a),
        nginxP99Ms: p99(runs.b),
        narhubCpuUsPerRequest: cpu(runs.a),
        nginxCpuUsPerRequest: cpu(runs.b),
        ratio,
        narhubRuns: runs.a,
        nginxRuns: runs.b,
      },
      note:
        'CPU time per request (server process, all threads): ' +
        `narhub ${cpu(runs.a).toFixed(1)} µs, nginx ${cpu(runs.b).toFixed(1)} µs ` +
        `(nginx runs ${cpus().length} worker processes, narhub one event loop)`,
    },
  ];
}
