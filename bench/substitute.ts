// 3. Substitution of the big path by the real Nix client into a fresh chroot store: from narhub
// against nginx serving a cache directory Nix wrote itself with `nix copy --to file://…`.
import type { BenchContext } from './lib/context.js';
import { chrootSubstituter } from './lib/nix.js';
import { startNginx } from './lib/nginx.js';
import { passFail, type Result } from './lib/report.js';
import { alternate, fmtRatio, fmtSeconds, median } from './lib/stats.js';

const SUBSTITUTE_TARGET = 1.1;

export async function measureSubstitute(ctx: BenchContext): Promise<Result[]> {
  const big = await ctx.big();
  const s = await ctx.served();
  const file = await ctx.fileCache();
  const nginx = await startNginx(ctx.scope, { dir: await ctx.dir('nginx-file-cache'), root: file.dir });
  const substitute = chrootSubstituter(await ctx.nix(), await ctx.dir('client-stores'), big.path);
  const fromNarhub = () => substitute(`${s.narhub.url}/main`, s.publicKey);
  const fromNginx = () => substitute(nginx.url, file.publicKey);
  ctx.log('substitute: one warm-up substitution from each');
  await fromNarhub();
  await fromNginx();
  const n = ctx.reps(3, 2);
  ctx.log(`substitute: ${n} substitutions from each into fresh chroot stores, alternately`);
  const runs = await alternate(n, fromNarhub, fromNginx);
  await nginx.stop();
  const ratio = median(runs.a) / median(runs.b);
  return [
    {
      id: '3',
      measurement: 'substitute',
      what: 'nix copy --from (Nix 2.8) of the big path into a fresh chroot store',
      narhub: fmtSeconds(median(runs.a)),
      reference: `nginx + file:// cache ${fmtSeconds(median(runs.b))}`,
      ratio: fmtRatio(ratio),
      target: `≤ ${SUBSTITUTE_TARGET.toFixed(2)}× nginx time`,
      status: passFail(ratio <= SUBSTITUTE_TARGET),
      figures: {
        narSize: big.narSize,
        narhubSeconds: median(runs.a),
        nginxSeconds: median(runs.b),
        ratio,
        narhubRuns: runs.a,
        nginxRuns: runs.b,
      },
    },
  ];
}
