import { Counter, type Registry } from 'prom-client';
import type { UpstreamCounts, UpstreamStats } from '../cache/upstream/upstream-stats.js';

const COUNTERS: { name: string; help: string; field: keyof UpstreamCounts }[] = [
  {
    name: 'narhub_upstream_hits_total',
    help: 'Narinfos an upstream answered with and narhub accepted, by cache and upstream.',
    field: 'hits',
  },
  {
    name: 'narhub_upstream_misses_total',
    help: 'Narinfos an upstream said it does not have, by cache and upstream.',
    field: 'misses',
  },
  {
    name: 'narhub_upstream_bytes_total',
    help: 'NAR bytes received from an upstream, by cache and upstream.',
    field: 'bytes',
  },
  {
    name: 'narhub_upstream_errors_total',
    help:
      'Narinfo lookups and NAR downloads of an upstream that failed (down, slow, refused, bad signature, bytes ' +
      'that did not verify).',
    field: 'errors',
  },
];

/**
 * The upstream counters of the cache domain (`cache/upstream/upstream-stats.ts`) as Prometheus
 * counters in the registry `/metrics` serves, read at scrape time.
 */
export function registerUpstreamMetrics(registry: Registry, stats: UpstreamStats): void {
  for (const { name, help, field } of COUNTERS) {
    new Counter({
      name,
      help,
      labelNames: ['cache', 'upstream'],
      registers: [registry],
      collect() {
        this.reset();
        for (const row of stats.rows()) this.inc({ cache: row.cache, upstream: row.upstream }, row[field]);
      },
    });
  }
}
