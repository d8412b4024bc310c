import { Registry, type Metric, type MetricValueWithName } from 'prom-client';

/** Latency buckets in seconds: a narinfo hit takes tens of µs, a large NAR PUT minutes. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The route label of requests no route matched, so a scan of random URLs adds one series only. */
export const UNMATCHED_ROUTE = 'unmatched';

const NAME = 'narhub_http_request_duration_seconds';

export interface RequestMetrics {
  readonly registry: Registry;
  /**
   * Records one answered request. Every request is recorded through here: Fastify's routes by the
   * `onResponse` hook of `http/app.ts`, the narinfo fast path by itself, with the route's label.
   */
  observe(method: string, route: string, status: number, seconds: number): void;
  /** `observe` for one series, looked up once (for the fast path, which records the same few). */
  series(method: string, route: string, status: number): (seconds: number) => void;
}

interface Series {
  labels: { method: string; route: string; status: number };
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * HTTP requests by method, route (the route's pattern, never the URL) and status, with their
 * latency, as one Prometheus histogram (its `_count` is the request count), in `prom-client`'s
 * registry, which formats it. The histogram keeps its own series: prom-client's `observe` hashes
 * the labels on every call (~1.3 µs), as much as the rest of the narinfo fast path's own work,
 * which answers tens of thousands of requests a second.
 */
export function createRequestMetrics(): RequestMetrics {
  const registry = new Registry();
  const series = new Map<string, Series>();

  const histogram = {
    name: NAME,
    help: 'Time from the request to its answer, by method, route pattern and status.',
    type: 'histogram',
    aggregator: 'sum',
    get() {
      const values: MetricValueWithName<string>[] = [];
      for (const s of series.values()) {
        let cumulative = 0;
        BUCKETS.forEach((le, i) => {
          cumulative += s.counts[i]!;
          values.push({ metricName: `${NAME}_bucket`, labels: { ...s.labels, le }, value: cumulative });
        });
        values.push({ metricName: `${NAME}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: s.count });
        values.push({ metricName: `${NAME}_sum`, labels: s.labels, value: s.sum });
        values.push({ metricName: `${NAME}_count`, labels: s.labels, value: s.count });
      }
      return { name: NAME, help: histogram.help, type: 'histogram', aggregator: 'sum', values };
    },
    reset() {
      series.clear();
    },
  };
  registry.registerMetric(histogram as unknown as Metric);

  function seriesOf(method: string, route: string, status: number): Series {
    const key = `${method} ${status} ${route}`;
    let s = series.get(key);
    if (s === undefined) {
      s = { labels: { method, route, status }, counts: new Float64Array(BUCKETS.length + 1), sum: 0, count: 0 };
      series.set(key, s);
    }
    return s;
  }

  function record(s: Series, seconds: number): void {
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
    s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  return {
    registry,
    observe(method, route, status, seconds) {
      record(seriesOf(method, route, status), seconds);
    },
    series(method, route, status) {
      const s = seriesOf(method, route, status);
      return (seconds) => record(s, seconds);
    },
  };
}
