// 4. Ingest of the big path. (a) `narhub push` (native endpoint: the server validates, compresses
// with zstd and signs) against `zstd -3 -T2` on the same NAR and against Nix writing a
// `file://` cache itself; (b) stock `nix copy --to http://narhub` against that same `file://` copy.
// Every upload goes to a cache of its own, so nothing is ever already there.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { unlink } from 'node:fs/promises';
import type { BenchContext } from './lib/context.js';
import type { RequestRecord } from './lib/narhub.js';
import { dumpNar } from './lib/fixtures.js';
import { execOk, reapedChildrenSeconds, rmTree } from './lib/proc.js';
import { passFail, type Result } from './lib/report.js';
import { fmtRate, fmtRatio, fmtSeconds, median } from './lib/stats.js';

const PUSH_VS_ZSTD_TARGET = 0.85;
const PUSH_VS_FILE_TARGET = 2.0;
const HTTP_VS_FILE_TARGET = 1.2;

export async function measureIngest(ctx: BenchContext): Promise<Result[]> {
  const big = await ctx.big();
  const nix = await ctx.nix();
  const push = await ctx.pushAvailable();
  // Request records time the phases of the stock upload (see httpPhases).
  const narhub = await ctx.startNarhub('ingest', { logRequests: true });
  const scratch = await ctx.dir('ingest');
  const nar = join(scratch, 'big.nar');
  ctx.log('ingest: dumping the NAR for zstd (this also warms the page cache)');
  await dumpNar(nix, big.path, nar);

  let count = 0;
  const zstd = async () => {
    const out = join(scratch, 'big.nar.zst');
    const res = await execOk('zstd', ['-3', '-T2', '-q', '-f', nar, '-o', out]);
    await unlink(out);
    return res.seconds;
  };
  const fileCopy = async () => {
    const dir = join(scratch, `file-${++count}`);
    try {
      return (
        await nix.run('nix', ['copy', '--to', `file://${dir}?compression=zstd`, big.path], { timeoutMs: 60 * 60_000 })
      ).seconds;
    } finally {
      await rmTree(dir);
    }
  };
  const narhubPush = async () =>
    (await ctx.narhubPush(narhub, await narhub.createCache(`push-${++count}`), [big.path])).seconds;
  const phases: HttpPhases[] = [];
  const httpCopy = async () => {
    const cache = `copy-${++count}`;
    const url = await narhub.createCache(cache);
    const started = Date.now();
    const seconds = (await ctx.nixCopyTo(narhub, url, [big.path])).seconds;
    const found = httpPhases(narhub.requests(), cache, started, Date.now());
    if (found !== undefined) phases.push(found);
    return seconds;
  };

  const steps: [string, () => Promise<number>][] = [
    ['zstd', zstd],
    ['file', fileCopy],
    ['http', httpCopy],
  ];
  if (push) steps.push(['push', narhubPush]);
  const times: Record<string, number[]> = Object.fromEntries(steps.map(([name]) => [name, []]));
  // CPU seconds of each run, every process counted: the commands (reaped children) and narhub.
  const cpu: Record<string, number[]> = Object.fromEntries(steps.map(([name]) => [name, []]));
  const n = ctx.reps(3, 2);
  ctx.log(`ingest: ${n} rounds of ${steps.map(([s]) => s).join(', ')} (order rotating)`);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < steps.length; j++) {
      const [name, run] = steps[(i + j) % steps.length]!;
      const [client0, server0] = [await reapedChildrenSeconds(), await narhub.cpuSeconds()];
      times[name]!.push(await run());
      cpu[name]!.push((await reapedChildrenSeconds()) - client0 + ((await narhub.cpuSeconds()) - server0));
    }
  }
  await narhub.stop();
  await unlink(nar);

  const t = (name: string) => median(times[name] ?? []);
  const rate = (name: string) => big.narSize / t(name);
  const results: Result[] = [];
  const cpuOf = (name: string) => median(cpu[name] ?? []);
  const figures = {
    narSize: big.narSize,
    seconds: times,
    medianSeconds: Object.fromEntries(steps.map(([s]) => [s, t(s)])),
    cpuSeconds: cpu,
  };
  const cores = availableParallelism();
  // What all processes of a run need, spread perfectly over every core: no run can be faster.
  const cpuNote = (names: string[]) => {
    const total = names.map((n) => `${n} ${fmtSeconds(cpuOf(n))}`).join(', ');
    const spread = names.map((n) => `${n} ${fmtSeconds(cpuOf(n) / cores)}`).join(', ');
    return `CPU of all processes (medians): ${total}; on ${cores} cores that alone takes at least ${spread}`;
  };
  if (push) {
    const vsZstd = rate('push') / rate('zstd');
    const vsFile = rate('push') / rate('file');
    results.push(
      {
        id: '4a',
        measurement: 'ingest',
        what: 'ingest, narhub push of the big path (NAR rate)',
        narhub: `${fmtRate(rate('push'))} (${fmtSeconds(t('push'))})`,
        reference: `zstd -3 -T2 ${fmtRate(rate('zstd'))}`,
        ratio: fmtRatio(vsZstd),
        target: `≥ ${PUSH_VS_ZSTD_TARGET.toFixed(2)}× zstd`,
        status: passFail(vsZstd >= PUSH_VS_ZSTD_TARGET),
        figures: { ...figures, ratio: vsZstd },
        note: cpuNote(['zstd', 'push', 'file']),
      },
      {
        id: '4a',
        measurement: 'ingest',
        what: 'ingest, narhub push of the big path (NAR rate)',
        narhub: `${fmtRate(rate('push'))} (${fmtSeconds(t('push'))})`,
        reference: `nix copy file:// ${fmtRate(rate('file'))}`,
        ratio: fmtRatio(vsFile),
        target: `≥ ${PUSH_VS_FILE_TARGET.toFixed(2)}× file://`,
        status: passFail(vsFile >= PUSH_VS_FILE_TARGET),
        figures: { ratio: vsFile },
      },
    );
  } else {
    for (const [reference, target] of [
      [`zstd -3 -T2 ${fmtRate(rate('zstd'))}`, `≥ ${PUSH_VS_ZSTD_TARGET.toFixed(2)}× zstd`],
      [`nix copy file:// ${fmtRate(rate('file'))}`, `≥ ${PUSH_VS_FILE_TARGET.toFixed(2)}× file://`],
    ] as const) {
      results.push({
        id: '4a',
        measurement: 'ingest',
        what: 'ingest, narhub push of the big path',
        narhub: 'not available yet',
        reference,
        ratio: '—',
        target,
        status: 'n/a',
        figures,
      });
    }
  }
  const httpRatio = t('http') / t('file');
  const phase = (k: keyof HttpPhases) => median(phases.map((p) => p[k]));
  const clientAlone = phases.length === 0 ? undefined : (phase('compressing') + phase('readingBack')) / t('file');
  results.push({
    id: '4b',
    measurement: 'ingest',
    what: 'ingest, nix copy --to http://narhub?compression=zstd',
    narhub: `${fmtSeconds(t('http'))} (${fmtRate(rate('http'))})`,
    reference: `nix copy file:// ${fmtSeconds(t('file'))}`,
    ratio: fmtRatio(httpRatio),
    target: `≤ ${HTTP_VS_FILE_TARGET.toFixed(2)}× file:// time`,
    status: passFail(httpRatio <= HTTP_VS_FILE_TARGET),
    figures: { ...figures, ratio: httpRatio, phases, clientAloneRatio: clientAlone },
    ...(clientAlone === undefined
      ? {}
      : {
          note:
            `medians: Nix compressing ${fmtSeconds(phase('compressing'))}, ` +
            `reading its temp file back ${fmtSeconds(phase('readingBack'))}, ` +
            `NAR PUT ${fmtSeconds(phase('upload'))} (narhub receiving, decoding, verifying), ` +
            `narinfo PUT and exit ${fmtSeconds(phase('after'))}; ` +
            `Nix's own part before its first byte is sent is already ${fmtRatio(clientAlone)} the file:// time`,
        }),
  });
  return results;
}

/** Where the time of one stock `nix copy --to http://…` went, in seconds. */
export interface HttpPhases {
  /** From the command's start to Nix's HEAD of the NAR file: dumping and compressing. */
  compressing: number;
  /** From that HEAD to the NAR PUT: Nix 2.8 reads its compressed temp file back into memory. */
  readingBack: number;
  /** The NAR PUT, as the server saw it: receiving, decoding and verifying. */
  upload: number;
  /** From the NAR PUT's end to the command's end: the narinfo PUT and exit. */
  after: number;
}

/** The phases of one copy into `cache` from the server's request records, if all were seen. */
export function httpPhases(
  requests: RequestRecord[],
  cache: string,
  started: number,
  ended: number,
): HttpPhases | undefined {
  const narUrl = (r: RequestRecord) => r.url.startsWith(`/${cache}/nar/`);
  const head = requests.find((r) => r.method === 'HEAD' && narUrl(r));
  const put = requests.find((r) => r.method === 'PUT' && narUrl(r));
  if (head === undefined || put?.end === undefined) return undefined;
  return {
    compressing: (head.start - started) / 1000,
    readingBack: (put.start - (head.end ?? head.start)) / 1000,
    upload: (put.end - put.start) / 1000,
    after: (ended - put.end) / 1000,
  };
}
