// 5. Peak resident memory (VmHWM) of the narhub server process while it takes a multi-GB NAR
// (narhub push when available, and stock nix copy) and then serves it back in full.
import type { BenchContext } from './lib/context.js';
import { hashPart } from './lib/nix.js';
import { curlGet } from './nar-get.js';
import { passFail, type Result } from './lib/report.js';
import { fmtBytes } from './lib/stats.js';

/** 300 MB (10^6 bytes: the stricter reading). */
const PEAK_RSS_TARGET = 300e6;

export async function measureMemory(ctx: BenchContext): Promise<Result[]> {
  const huge = await ctx.huge();
  const push = await ctx.pushAvailable();
  const narhub = await ctx.startNarhub('memory');
  const phases: Record<string, number> = { started: await narhub.peakRss() };
  const caches: string[] = [];
  if (push) {
    ctx.log(`memory: narhub push of ${fmtBytes(huge.narSize)}`);
    await ctx.narhubPush(narhub, await narhub.createCache('pushed'), [huge.path]);
    phases['after narhub push'] = await narhub.peakRss();
    caches.push('pushed');
  }
  ctx.log(`memory: nix copy --to http of ${fmtBytes(huge.narSize)}`);
  await ctx.nixCopyTo(narhub, await narhub.createCache('copied'), [huge.path]);
  phases['after nix copy'] = await narhub.peakRss();
  caches.push('copied');
  for (const cache of caches) {
    const narinfo = await (await fetch(`${narhub.url}/${cache}/${hashPart(huge.path)}.narinfo`)).text();
    const url = /^URL: (\S+)$/m.exec(narinfo)?.[1];
    const fileSize = Number(/^FileSize: (\d+)$/m.exec(narinfo)?.[1]);
    ctx.log(`memory: GET ${cache}/${url}`);
    await curlGet(`${narhub.url}/${cache}/${url}`, fileSize);
  }
  phases['after serving'] = await narhub.peakRss();
  const peak = phases['after serving']!;
  await narhub.stop();
  return [
    {
      id: '5',
      measurement: 'memory',
      what:
        `peak server RSS (VmHWM), ${push ? 'narhub push + ' : ''}` +
        `nix copy of a ${fmtBytes(huge.narSize)} NAR, then GETs`,
      narhub: fmtBytes(peak),
      reference: `at start ${fmtBytes(phases.started!)}`,
      ratio: '—',
      target: `< ${fmtBytes(PEAK_RSS_TARGET)}`,
      status: passFail(peak < PEAK_RSS_TARGET),
      figures: { narSize: huge.narSize, peakRssBytes: peak, phases },
      note: `VmHWM ${Object.entries(phases)
        .map(([k, v]) => `${k} ${fmtBytes(v)}`)
        .join(', ')}`,
    },
  ];
}
