// 6. narinfo latency while a big upload runs: wrk against the served narinfos for as long as a
// push of the big path (to a fresh cache of the same server) is under way, stopped when it ends,
// and, alternately, while the same kind of CPU load runs outside narhub (dump | zstd -T2).
import { join } from 'node:path';
import type { BenchContext } from './lib/context.js';
import { execOk } from './lib/proc.js';
import { passFail, type Result } from './lib/report.js';
import { fmtMs, fmtRps, median } from './lib/stats.js';
import { runWrk, startWrk, writeUrlScript, type WrkResult } from './lib/wrk.js';

const UNDER_PUSH_P99_TARGET_MS = 20;

export async function measureNarinfoUnderPush(ctx: BenchContext): Promise<Result[]> {
  const big = await ctx.big();
  const s = await ctx.served();
  const push = await ctx.pushAvailable();
  const script = join(ctx.runDir, 'narinfo-under-push.lua');
  await writeUrlScript(script, s.narinfoPaths);
  const idle = await runWrk({ url: s.narhub.url, script, connections: 64, threads: 2, seconds: 3 });
  let count = 0;
  const upload = async () => {
    const cache = await s.narhub.createCache(`under-push-${++count}`);
    return push ? ctx.narhubPush(s.narhub, cache, [big.path]) : ctx.nixCopyTo(s.narhub, cache, [big.path]);
  };

  // The reference load: the CPU work of such an upload without narhub in it (Nix dumping the
  // NAR, zstd compressing it on both cores), so a p99 can be told apart from the machine's.
  const nix = await ctx.nix();
  const foreignLoad = () =>
    execOk('sh', ['-c', `nix-store --dump '${big.path}' | zstd -3 -T2 -q -c > /dev/null`], {
      env: nix.env,
      timeoutMs: 60 * 60_000,
    });

  type Round = {
    p99Ms: number;
    requestsPerSecond: number;
    pushSeconds: number;
    loopDelayMaxMs: number;
    wrk: WrkResult;
  };
  /** One wrk run for as long as `load` runs (from half a second in): the p99 of every request made meanwhile. */
  const during = async (load: () => Promise<{ seconds: number }>): Promise<Round> => {
    const started = Date.now();
    const loading = load();
    loading.catch(() => undefined);
    // Let the upload get going (closure query, missing-paths) before measuring.
    await Promise.race([new Promise((r) => setTimeout(r, 500)), loading.catch(() => undefined)]);
    const running = startWrk({ url: s.narhub.url, script, connections: 64, threads: 2 });
    // wrk is stopped however the load ends; then the load's failure, if any, is the round's.
    const outcome = await loading.then(
      (res) => ({ res }),
      (err: unknown) => ({ err }),
    );
    const measured = await running.stop();
    if ('err' in outcome) throw outcome.err;
    const { res } = outcome;
    const ended = Date.now();
    // The monitor reports each second after it ends; wait for the one covering the end.
    await new Promise((r) => setTimeout(r, 1100));
    const loop = s.narhub.loopDelays().filter((l) => l.t > started && l.t - 1000 < ended);
    return {
      p99Ms: measured.p99Ms,
      requestsPerSecond: measured.requestsPerSecond,
      pushSeconds: res.seconds,
      loopDelayMaxMs: Math.max(0, ...loop.map((l) => l.maxMs)),
      wrk: measured,
    };
  };

  const n = ctx.reps(3, 1);
  ctx.log(
    `narinfo-under-push: ${n} × (${push ? 'narhub push' : 'nix copy'} of the big path, ` +
      'then nix-store --dump | zstd -T2 of it) under wrk',
  );
  const reps: Round[] = [];
  const foreign: Round[] = [];
  for (let i = 0; i < n; i++) {
    reps.push(await during(upload));
    foreign.push(await during(foreignLoad));
  }
  const foreignP99 = median(foreign.map((r) => r.p99Ms));
  const p99 = median(reps.map((r) => r.p99Ms));
  const rps = median(reps.map((r) => r.requestsPerSecond));
  const uploadStall = Math.max(...reps.map((r) => r.loopDelayMaxMs));
  const foreignStall = Math.max(...foreign.map((r) => r.loopDelayMaxMs));
  const rounds = reps.map((r, i) => `${fmtMs(r.p99Ms)} / ${fmtMs(foreign[i]!.p99Ms)}`).join(', ');
  return [
    {
      id: '6',
      measurement: 'narinfo-under-push',
      what: `narinfo p99, wrk -c64, during ${push ? 'narhub push' : 'nix copy'} of the big path`,
      narhub: `p99 ${fmtMs(p99)} (${fmtRps(rps)})`,
      reference:
        `no upload: p99 ${fmtMs(idle.p99Ms)} (${fmtRps(idle.requestsPerSecond)}); ` +
        `dump | zstd -T2 outside narhub: p99 ${fmtMs(foreignP99)}`,
      ratio: '—',
      target: `< ${UNDER_PUSH_P99_TARGET_MS} ms`,
      status: passFail(p99 < UNDER_PUSH_P99_TARGET_MS),
      figures: {
        p99Ms: p99,
        requestsPerSecond: rps,
        idle,
        reps,
        foreign: { p99Ms: foreignP99, reps: foreign },
        uploader: push ? 'narhub push' : 'nix copy',
      },
      note:
        'p99 of a round: of every request wrk made while the upload ran (from 0.5 s in to its end); ' +
        `median of ${n} rounds. ` +
        `Longest event-loop stall during the uploads: ${fmtMs(uploadStall)}, ` +
        `during the outside load: ${fmtMs(foreignStall)} ` +
        "(the delay of the loop's timers: blocking and being descheduled alike). " +
        `Rounds, upload / outside: ${rounds}`,
    },
  ];
}
