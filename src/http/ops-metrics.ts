import type { Server, Socket } from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CacheService } from '../cache/cache-service.js';

/** What the hub reports to the metrics when it runs (`narhub serve` gathers it). */
export interface HubStats {
  queues: { name: string; waiting: number; active: number; delayed: number }[];
  spokesOnline: number;
  /** Builds by status (`succeeded`, `failed`, `dependency-failed`, `cancelled`, `queued`, `running`). */
  builds: Record<string, number>;
}

/**
 * The cache's own metrics, on the registry `/metrics` serves (`request-metrics.ts` has the HTTP
 * histogram). Everything that lives in the database or the domain is read at scrape time, so a
 * scrape costs two aggregate queries and nothing is counted twice; only bytes on the wire are
 * counted as they pass.
 */
export function registerOpsMetrics(registry: Registry, service: CacheService, hub?: () => Promise<HubStats>) {
  const registers = [registry];
  const cacheNames = () => new Map(service.registry.list().map((c) => [c.id, c.name]));

  // Bytes on the wire, from the sockets themselves: every request counts, the narinfo fast path's
  // included, headers too. Closed sockets add their totals; live ones are read at scrape time.
  const live = new Set<Socket>();
  const closed = { read: 0, written: 0 };
  const reported = { read: 0, written: 0 };
  const wire = () => {
    let read = closed.read;
    let written = closed.written;
    for (const s of live) {
      read += s.bytesRead;
      written += s.bytesWritten;
    }
    return { read, written };
  };
  new Counter({
    name: 'narhub_http_received_bytes_total',
    help: 'Bytes received from HTTP clients (request lines, headers and bodies).',
    registers,
    collect() {
      const now = wire().read;
      this.inc(Math.max(0, now - reported.read));
      reported.read = now;
    },
  });
  new Counter({
    name: 'narhub_http_sent_bytes_total',
    help: 'Bytes sent to HTTP clients (status lines, headers and bodies).',
    registers,
    collect() {
      const now = wire().written;
      this.inc(Math.max(0, now - reported.written));
      reported.written = now;
    },
  });

  // One gauge collects them all (a scrape reads the database once); registered first, so the
  // metrics it fills are exported with this scrape's values.
  new Gauge({
    name: 'narhub_caches',
    help: 'Caches this narhub serves.',
    registers,
    collect() {
      collectReads();
      collectUploads();
      const names = cacheNames();
      this.set(names.size);
      for (const g of [paths, bytes, gcRuns, gcPaths, gcBytes, gcLast, rewriteDone, rewriteTotal]) g.reset();
      for (const [id, s] of service.allStats()) {
        const cache = names.get(id);
        if (cache === undefined) continue;
        paths.set({ cache }, s.paths);
        bytes.set({ cache }, s.bytes);
      }
      for (const t of service.gcTotals()) {
        const cache = names.get(t.cacheId);
        if (cache === undefined) continue;
        gcRuns.set({ cache }, t.runs);
        gcPaths.set({ cache }, t.paths);
        gcBytes.set({ cache }, t.bytes);
        if (t.last !== null) gcLast.set({ cache }, t.last / 1000);
      }
      for (const cache of names.values()) {
        for (const k of service.registry.keys(cache)) {
          if (k.rewrite === null) continue;
          rewriteDone.set({ cache, key: k.name, state: k.state }, k.rewrite.done);
          rewriteTotal.set({ cache, key: k.name, state: k.state }, k.rewrite.total);
        }
      }
    },
  });

  const hits = new Counter({
    name: 'narhub_narinfo_hits_total',
    help: 'Narinfo reads (GET or HEAD) answered with the narinfo, per cache.',
    labelNames: ['cache'] as const,
    registers,
  });
  const misses = new Counter({
    name: 'narhub_narinfo_misses_total',
    help: 'Narinfo reads (GET or HEAD) of paths the cache does not have, per cache.',
    labelNames: ['cache'] as const,
    registers,
  });
  const seenReads = new Map<number, { hits: number; misses: number }>();
  const collectReads = () => {
    const names = cacheNames();
    for (const [id, r] of service.narinfoReads()) {
      const name = names.get(id);
      if (name === undefined) continue;
      const before = seenReads.get(id) ?? { hits: 0, misses: 0 };
      if (r.hits > before.hits) hits.inc({ cache: name }, r.hits - before.hits);
      if (r.misses > before.misses) misses.inc({ cache: name }, r.misses - before.misses);
      seenReads.set(id, { hits: r.hits, misses: r.misses });
    }
  };

  const uploads = new Counter({
    name: 'narhub_uploads_total',
    help:
      'Uploads (narinfo PUTs, native uploads, NAR PUTs) by outcome: committed, or rejected with the error code ' +
      'as reason.',
    labelNames: ['cache', 'outcome', 'reason'] as const,
    registers,
  });
  const seenUploads = new Map<string, number>();
  const collectUploads = () => {
    for (const [key, n] of service.uploadOutcomes()) {
      const before = seenUploads.get(key) ?? 0;
      if (n <= before) continue;
      const [cache, outcome, reason] = key.split('\t') as [string, string, string];
      uploads.inc({ cache, outcome, reason }, n - before);
      seenUploads.set(key, n);
    }
  };

  const paths = new Gauge({
    name: 'narhub_cache_paths',
    help: 'Store paths in the cache.',
    labelNames: ['cache'] as const,
    registers,
  });
  const bytes = new Gauge({
    name: 'narhub_cache_bytes',
    help: 'Bytes of the valid NAR files the cache holds.',
    labelNames: ['cache'] as const,
    registers,
  });
  const gcRuns = new Gauge({
    name: 'narhub_gc_runs',
    help: 'Completed (not dry) GC runs per cache, from every process (a count kept in the database).',
    labelNames: ['cache'] as const,
    registers,
  });
  const gcPaths = new Gauge({
    name: 'narhub_gc_removed_paths',
    help: 'Store paths GC removed per cache, all runs together.',
    labelNames: ['cache'] as const,
    registers,
  });
  const gcBytes = new Gauge({
    name: 'narhub_gc_freed_bytes',
    help: 'Bytes of NAR files GC freed per cache, all runs together.',
    labelNames: ['cache'] as const,
    registers,
  });
  const gcLast = new Gauge({
    name: 'narhub_gc_last_run_timestamp_seconds',
    help: 'When the last completed GC run of the cache finished.',
    labelNames: ['cache'] as const,
    registers,
  });
  const rewriteDone = new Gauge({
    name: 'narhub_key_rewrite_done_paths',
    help: 'Narinfos rewritten for a key change (re-signed by a new active key, or rid of a retired key).',
    labelNames: ['cache', 'key', 'state'] as const,
    registers,
  });
  const rewriteTotal = new Gauge({
    name: 'narhub_key_rewrite_total_paths',
    help: 'Narinfos the key change asks to rewrite.',
    labelNames: ['cache', 'key', 'state'] as const,
    registers,
  });

  if (hub !== undefined) {
    // prom-client collects every metric of a scrape at once, so each gauge reads the hub itself;
    // one read serves the three gauges of a scrape.
    let last: { at: number; stats: Promise<HubStats> } | undefined;
    const hubStats = (): Promise<HubStats> => {
      const at = Date.now();
      if (last === undefined || at - last.at > 1000) last = { at, stats: hub() };
      return last.stats;
    };
    new Gauge({
      name: 'narhub_hub_spokes_online',
      help: 'Spokes whose heartbeat is live.',
      registers,
      async collect() {
        this.set((await hubStats()).spokesOnline);
      },
    });
    new Gauge({
      name: 'narhub_hub_queue_jobs',
      help: 'Build jobs in each hub queue, by state (waiting, active, delayed).',
      labelNames: ['queue', 'state'] as const,
      registers,
      async collect() {
        const { queues } = await hubStats();
        this.reset();
        for (const q of queues)
          for (const state of ['waiting', 'active', 'delayed'] as const) this.set({ queue: q.name, state }, q[state]);
      },
    });
    new Gauge({
      name: 'narhub_hub_builds',
      help: 'Builds the hub knows, by status (succeeded, failed, dependency-failed, cancelled, queued, running).',
      labelNames: ['status'] as const,
      registers,
      async collect() {
        const { builds } = await hubStats();
        this.reset();
        for (const [status, n] of Object.entries(builds)) this.set({ status }, n);
      },
    });
  }

  return {
    /** Counts the bytes of every connection the server accepts. */
    watch(server: Server): void {
      server.on('connection', (socket: Socket) => {
        live.add(socket);
        socket.once('close', () => {
          live.delete(socket);
          closed.read += socket.bytesRead;
          closed.written += socket.bytesWritten;
        });
      });
    },
  };
}
