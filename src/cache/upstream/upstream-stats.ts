/** What narhub counted of one upstream since it started (the metrics read these at scrape time). */
export interface UpstreamCounts {
  /** Narinfos it answered with and narhub accepted. */
  hits: number;
  /** Narinfos it said it does not have (404, 410, 403). */
  misses: number;
  /** NAR bytes received from it. */
  bytes: number;
  /** Lookups and downloads that failed: down, slow, refused, a bad signature, bytes that did not verify. */
  errors: number;
}

export interface UpstreamCountsRow extends UpstreamCounts {
  cache: string;
  upstream: string;
}

/**
 * Counters per cache and upstream, kept in the cache domain as plain numbers; `http/` exposes
 * them as Prometheus counters (`narhub_upstream_*_total`).
 */
export function createUpstreamStats() {
  const counts = new Map<string, UpstreamCountsRow>();
  function of(cache: string, upstream: string): UpstreamCountsRow {
    const key = `${cache} ${upstream}`;
    let row = counts.get(key);
    if (row === undefined) {
      row = { cache, upstream, hits: 0, misses: 0, bytes: 0, errors: 0 };
      counts.set(key, row);
    }
    return row;
  }
  return {
    of,
    rows(): UpstreamCountsRow[] {
      return [...counts.values()].map((r) => ({ ...r }));
    },
  };
}

export type UpstreamStats = ReturnType<typeof createUpstreamStats>;
