// 4. Ingest of the big path. (a) `narhub push` (native endpoint: the server validates, compresses
// with zstd and signs) against `zstd -3 -T2` on the same NAR and against Nix writing a
// `file://` cache itself; (b) stock `nix copy --to http://narhub` against that same `file://` copy.
// Every upload goes to a cache of its own, so nothing is ever already there.
import { join } from 'node:path';
import { unlink } from 'node:fs/promises';
import type { BenchContext } from './lib/context.js';
import { dumpNar } from './lib/fixtures.js';
import { execOk, rmTree } from './lib/proc.js';
import { passFail, type Result } from './lib/report.js';
import { fmtRate, fmtRatio, fmtSeconds, median } from './lib/stats.js';

export const PUSH_VS_ZSTD_TARGET = 0.85;
export const PUSH_VS_FILE_TARGET = 2.0;
export const HTTP_VS_FILE_TARGET = 1.2;

export async function measureIngest(ctx: BenchContext): Promise<Result[]> {
  const big = await ctx.big();
  const nix = await ctx.nix();
  const push = await ctx.pushAvailable();
  const narhub = await ctx.startNarhub('ingest');
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
      return (await nix.run('nix', ['copy', '--to', `file://${dir}?compression=zstd`, big.path], { timeoutMs: 60 * 60_000 })).seconds;
    } finally {
      await rmTree(dir);
    }
  };
  const narhubPush = async () => (await ctx.narhubPush(narhub, await narhub.createCache(`push-${++count}`), [big.path])).seconds;
  const httpCopy = async () => (await ctx.nixCopyTo(narhub, await narhub.createCache(`copy-${++count}`), [big.path])).seconds;

  const steps: [string, () => Promise<number>][] = [
    ['zstd', zstd],
    ['file', fileCopy],
    ['http', httpCopy],
  ];
  if (push) steps.push(['push', narhubPush]);
  const times: Record<string, number[]> = Object.fromEntries(steps.map(([name]) => [name, []]));
  const n = ctx.reps(3, 2);
  ctx.log(`ingest: ${n} rounds of ${steps.map(([s]) => s).join(', ')} (order rotating)`);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < steps.length; j++) {
      const [name, run] = steps[(i + j) % steps.length]!;
      times[name]!.push(await run());
    }
  }
  await narhub.stop();
  await unlink(nar);

  const t = (name: string) => median(times[name] ?? []);
  const rate = (name: string) => big.narSize / t(name);
  const results: Result[] = [];
  const figures = { narSize: big.narSize, seconds: times, medianSeconds: Object.fromEntries(steps.map(([s]) => [s, t(s)])) };
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
      results.push({ id: '4a', measurement: 'ingest', what: 'ingest, narhub push of the big path', narhub: 'not available yet', reference, ratio: '—', target, status: 'n/a', figures });
    }
  }
  const httpRatio = t('http') / t('file');
  results.push({
    id: '4b',
    measurement: 'ingest',
    what: 'ingest, nix copy --to http://narhub?compression=zstd',
    narhub: `${fmtSeconds(t('http'))} (${fmtRate(rate('http'))})`,
    reference: `nix copy file:// ${fmtSeconds(t('file'))}`,
    ratio: fmtRatio(httpRatio),
    target: `≤ ${HTTP_VS_FILE_TARGET.toFixed(2)}× file:// time`,
    status: passFail(httpRatio <= HTTP_VS_FILE_TARGET),
    figures: { ...figures, ratio: httpRatio },
  });
  return results;
}
