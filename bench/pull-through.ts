// 7. Substitution of the big path through narhub from an upstream (pull-through), by the real Nix
// client into a fresh chroot store: cold (narhub has never seen the path: it downloads, verifies and
// stores it while streaming it to the client) and warm (the next client, served locally), against
// the same substitution straight from the upstream: nginx serving a cache directory Nix wrote.
import type { BenchContext } from './lib/context.js';
import { chrootSubstituter, hashPart } from './lib/nix.js';
import { startNginx } from './lib/nginx.js';
import { passFail, type Result } from './lib/report.js';
import { fmtBytes, fmtRatio, fmtSeconds, median } from './lib/stats.js';

const PULL_THROUGH_COLD_TARGET = 1.2;

interface Cache {
  url: string;
  publicKey: string;
}

export async function measurePullThrough(ctx: BenchContext): Promise<Result[]> {
  const big = await ctx.big();
  const file = await ctx.fileCache();
  const upstream = await startNginx(ctx.scope, { dir: await ctx.dir('nginx-upstream'), root: file.dir });
  const narhub = await ctx.startNarhub('pull-through');
  const substitute = chrootSubstituter(await ctx.nix(), await ctx.dir('pull-through-stores'), big.path);
  let caches = 0;

  // Each cold run gets a cache of its own, so narhub has never seen the path.
  const freshCache = async (): Promise<Cache> => {
    const name = `pull-${++caches}`;
    await narhub.createCache(name);
    await narhub.cli(['upstream', 'add', name, upstream.url, '--public-key', file.publicKey]);
    return { url: `${narhub.url}/${name}`, publicKey: await narhub.publicKey(name) };
  };
  /** Until narhub has committed the path (it commits once the NAR verified, right after serving it). */
  const committed = async (cache: Cache): Promise<void> => {
    const name = cache.url.slice(cache.url.lastIndexOf('/') + 1);
    for (let i = 0; i < 600; i++) {
      const res = await fetch(`${narhub.url}/api/v1/caches/${name}/missing-paths`, {
        method: 'POST',
        // With the admin token: anonymous missing-paths requests are rate-limited.
        headers: { authorization: `Bearer ${narhub.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ storePaths: [big.path] }),
      });
      if (!res.ok) throw new Error(`missing-paths answered ${res.status}: ${await res.text()}`);
      if (((await res.json()) as { missing: string[] }).missing.length === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`${big.path} was not committed in ${cache.url} within a minute`);
  };

  let filled: Cache | undefined;
  const direct = () => substitute(upstream.url, file.publicKey);
  const cold = async () => {
    const cache = await freshCache();
    const seconds = await substitute(cache.url, cache.publicKey);
    await committed(cache);
    filled = cache;
    return seconds;
  };
  const warm = () => substitute(filled!.url, filled!.publicKey);

  ctx.log('pull-through: one warm-up substitution straight from the upstream and one through narhub');
  await direct();
  await cold();
  const n = ctx.reps(3, 2);
  ctx.log(`pull-through: ${n} rounds of direct, cold and warm substitutions, in rotating order`);
  const runs = { direct: [] as number[], cold: [] as number[], warm: [] as number[] };
  for (let i = 0; i < n; i++) {
    // The order rotates so drift hits all three alike; warm always follows a cold run.
    if (i % 2 === 0) {
      runs.direct.push(await direct());
      runs.cold.push(await cold());
      runs.warm.push(await warm());
    } else {
      runs.cold.push(await cold());
      runs.warm.push(await warm());
      runs.direct.push(await direct());
    }
  }
  const metrics = await (await fetch(`${narhub.url}/metrics`)).text();
  const bytes = [...metrics.matchAll(/^narhub_upstream_bytes_total\{[^}]*\} (\d+)$/gm)].reduce(
    (sum, m) => sum + Number(m[1]),
    0,
  );
  const narinfo = await (await fetch(`${upstream.url}/${hashPart(big.path)}.narinfo`)).text();
  const fileSize = Number(/^FileSize: (\d+)$/m.exec(narinfo)?.[1]);
  const peakRss = await narhub.peakRss();
  await upstream.stop();
  await narhub.stop();

  const coldRatio = median(runs.cold) / median(runs.direct);
  const warmRatio = median(runs.warm) / median(runs.direct);
  const figures = {
    narSize: big.narSize,
    fileSize,
    directSeconds: median(runs.direct),
    coldSeconds: median(runs.cold),
    warmSeconds: median(runs.warm),
    coldRatio,
    warmRatio,
    directRuns: runs.direct,
    coldRuns: runs.cold,
    warmRuns: runs.warm,
    coldCaches: caches,
    upstreamBytes: bytes,
    peakRss,
  };
  const reference = `straight from nginx + file:// cache ${fmtSeconds(median(runs.direct))}`;
  return [
    {
      id: '7',
      measurement: 'pull-through',
      what:
        `nix copy --from (Nix 2.8) of the big path through narhub, cold: narhub fetches it from the upstream ` +
        `meanwhile (${fmtBytes(fileSize)} zstd)`,
      narhub: fmtSeconds(median(runs.cold)),
      reference,
      ratio: fmtRatio(coldRatio),
      target: `≤ ${PULL_THROUGH_COLD_TARGET.toFixed(2)}× the direct time`,
      status: passFail(coldRatio <= PULL_THROUGH_COLD_TARGET),
      figures,
      note:
        `upstream bytes counted by narhub: ${bytes} for ${runs.cold.length + 1} cold runs of ${fileSize}; ` +
        `narhub peak RSS ${fmtBytes(peakRss)}`,
    },
    {
      id: '7w',
      measurement: 'pull-through',
      what: 'the same, warm: the next client, served from narhub’s storage',
      narhub: fmtSeconds(median(runs.warm)),
      reference,
      ratio: fmtRatio(warmRatio),
      target: 'none: reported',
      status: 'info',
      figures,
    },
  ];
}
