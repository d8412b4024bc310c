import { type FSWatcher, watch } from 'node:fs';
import type { ApiClient } from './api-client.js';
import { invalidPaths, queryClosure, queryPathInfos, type NixCommands, type PathInfo } from './closure.js';
import type { PathFilter } from './path-filter.js';
import {
  listEntries,
  moveToFailed,
  readEntry,
  removeEntries,
  removeStaleTemps,
  type QueueEntry,
} from './push-queue.js';
import { pushClosure, type FailedPath, type PushSettings } from './push.js';
import { backoffMs } from '../io/retry.js';
import { PushFailure } from './retry.js';

/**
 * Drains a push queue (`push-queue.ts`) into a cache, for `narhub push-daemon` and watch-store.
 * Entries are taken oldest first, a batch at a time (all the paths of a batch share one closure
 * query and one missing-paths question, so a path queued twice is uploaded once), and an entry is
 * deleted only once every path of its closure is in the cache. Before a batch, the filter drops
 * paths by name and (with --only-built-here) by what Nix records, and paths no longer in the
 * store (collected since) are dropped. In the push, a path the cache lacks whose NAR is over
 * --max-size is left out, with every path that needs it. After it, each entry is one of:
 * - done (every path of its closure in the cache, or left out): deleted;
 * - refused for good (a 4xx other than 401, 403, 404, 408 and 429: an invalid or oversized path,
 *   a conflicting one): moved to `failed/` with the reasons, so the queue does not stall on it;
 * - anything else (connection trouble, 5xx, a token the server does not take yet): kept, and
 *   tried again after a backoff that doubles up to `maxBackoffMs`. When the cache cannot even be
 *   asked what it lacks, the whole queue waits instead.
 * A daemon killed at any point loses nothing: the entry is still there at the next start.
 */
export interface DrainerOptions {
  queueDir: string;
  client: ApiClient;
  push: PushSettings;
  filter: PathFilter;
  nix?: NixCommands | undefined;
  log: (line: string) => void;
  /** First wait after a failed attempt (default 2 s), doubled each time up to `maxBackoffMs` (default 5 min). */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Paths per batch (default 2000). */
  batchPaths?: number;
  /** A look at the queue directory at least this often, besides its inotify events (default 10 s). */
  rescanMs?: number;
  /**
   * Push what is queued, each entry once, then stop (`--drain`, for the end of a CI job): an
   * entry whose push fails stays queued and is not tried again, and a batch the cache cannot
   * answer at all ends the run.
   */
  drain?: boolean;
}

/** What a drainer did with the entries it took. */
export interface DrainStats {
  /** Entries whose closure is in the cache (deleted). */
  done: number;
  /** Entries moved to `failed/`. */
  failed: number;
  /** Entries kept after a failed push (still queued). */
  kept: number;
  /** Whether the last batch could not be pushed at all (the cache could not be asked). */
  paused: boolean;
}

export interface Drainer {
  /** Looks at the queue now (a new entry was written). */
  wake(): void;
  /** Stops taking batches, lets the running one finish, then resolves. */
  close(): Promise<void>;
  /** Resolves once the drainer stopped: after `close()`, or, with `drain`, once nothing is left to try. */
  finished: Promise<DrainStats>;
}

/** Refusals that say something about the path, not about the daemon's setup or the server's state. */
function refusedForGood(f: FailedPath): boolean {
  return (
    !f.transient &&
    f.status !== undefined &&
    f.status >= 400 &&
    f.status < 500 &&
    ![401, 403, 404, 408, 429].includes(f.status)
  );
}

/** Paths a batch names as skipped, one line each; the rest are counted. */
const SKIPS_SHOWN = 20;

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Every path `roots` need, through the references among `infos`. */
function closureOf(roots: Iterable<string>, infos: Map<string, PathInfo>): Set<string> {
  const seen = new Set<string>();
  const stack = [...roots];
  while (stack.length > 0) {
    const path = stack.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    for (const ref of infos.get(path)?.references ?? []) if (!seen.has(ref)) stack.push(ref);
  }
  return seen;
}

interface Outcome {
  done: string[];
  failedForGood: { name: string; reasons: string[] }[];
  retry: { name: string; reason: string }[];
}

export function startDrainer(options: DrainerOptions): Drainer {
  const { queueDir, log, filter } = options;
  const batchPaths = options.batchPaths ?? 2000;
  const rescanMs = options.rescanMs ?? 10_000;
  const backoff = { retries: 0, baseMs: options.baseBackoffMs ?? 2000, maxMs: options.maxBackoffMs ?? 300_000 };
  /** Entries that failed: how often, and when they are due again. */
  const waiting = new Map<string, { attempts: number; dueAt: number }>();
  /** When the whole queue waits for the cache (or Nix) to answer again. */
  let pause = { attempts: 0, until: 0 };

  const drain = options.drain === true;
  const stats: DrainStats = { done: 0, failed: 0, kept: 0, paused: false };
  let closing = false;
  let wakeUp: (() => void) | undefined;
  const wake = () => {
    wakeUp?.();
    wakeUp = undefined;
  };

  /** Sorts the entries' paths out and pushes the closure of what is left. */
  const pushBatch = async (entries: QueueEntry[]): Promise<Outcome> => {
    const outcome: Outcome = { done: [], failedForGood: [], retry: [] };
    const allPaths = [...new Set(entries.flatMap((e) => e.paths))];
    // Paths an --include does not name are dropped without a word: with --include, that is
    // nearly every path of a busy store.
    const skipped: string[] = [];
    let roots = allPaths.filter((p) => {
      const why = filter.nameRejects(p);
      if (why && filter.included(p)) skipped.push(`${p}: ${why}`);
      return why === undefined;
    });
    const gone = await invalidPaths(roots, options.nix);
    for (const p of gone) log(`skipping ${p}: no longer in the store (collected?)`);
    roots = roots.filter((p) => !gone.has(p));
    if (filter.needsInfo && roots.length > 0) {
      const rejected = new Set<string>();
      for (const info of await queryPathInfos(roots, options.nix)) {
        const why = filter.infoRejects(info);
        if (why) {
          rejected.add(info.path);
          skipped.push(`${info.path}: ${why}`);
        }
      }
      roots = roots.filter((p) => !rejected.has(p));
    }
    for (const line of skipped.slice(0, SKIPS_SHOWN)) log(`skipping ${line}`);
    if (skipped.length > SKIPS_SHOWN) log(`skipping ${skipped.length - SKIPS_SHOWN} more paths the filters leave out`);
    if (roots.length === 0) {
      outcome.done = entries.map((e) => e.name);
      return outcome;
    }

    const closure = await queryClosure(roots, options.nix);
    const report = await pushClosure(closure, options.client, { ...options.push, leaveOut: filter.uploadRejects });
    for (const { path, reason } of report.leftOut.slice(0, SKIPS_SHOWN)) log(`leaving out ${path}: ${reason}`);
    if (report.leftOut.length > SKIPS_SHOWN)
      log(`leaving out ${report.leftOut.length - SKIPS_SHOWN} more paths the cache lacks (--max-size)`);
    log(
      `${entries.length} queue entr${entries.length === 1 ? 'y' : 'ies'}, ` +
        `${roots.length} path${roots.length === 1 ? '' : 's'} with a closure of ${report.closure}: ` +
        `${report.pushed.length} uploaded, ${report.present} already in the cache` +
        (report.fromUpstreams.length > 0 ? `, ${report.fromUpstreams.length} signed by its upstreams` : '') +
        (report.leftOut.length > 0 ? `, ${report.leftOut.length} left out` : '') +
        (report.failed.length > 0 ? `, ${report.failed.length} failed` : ''),
    );
    const infos = new Map(closure.map((i) => [i.path, i]));
    const failed = new Map(report.failed.map((f) => [f.path, f]));
    const kept = new Set(roots);
    for (const entry of entries) {
      const failures = [
        ...closureOf(
          entry.paths.filter((p) => kept.has(p)),
          infos,
        ),
      ].flatMap((p) => failed.get(p) ?? []);
      if (failures.length === 0) outcome.done.push(entry.name);
      else if (failures.some(refusedForGood))
        outcome.failedForGood.push({
          name: entry.name,
          // The causes first: the log line shows the first.
          reasons: [...failures]
            .sort((a, b) => Number(a.dependsOn !== undefined) - Number(b.dependsOn !== undefined))
            .map((f) => `${f.path}: ${f.reason}`),
        });
      else {
        const cause = failures.find((f) => f.dependsOn === undefined) ?? failures[0]!;
        outcome.retry.push({ name: entry.name, reason: `${cause.path}: ${cause.reason}` });
      }
    }
    return outcome;
  };

  const settle = async (outcome: Outcome) => {
    await removeEntries(queueDir, outcome.done);
    stats.done += outcome.done.length;
    stats.failed += outcome.failedForGood.length;
    for (const name of outcome.done) waiting.delete(name);
    for (const { name, reasons } of outcome.failedForGood) {
      const file = await moveToFailed(queueDir, name, reasons);
      waiting.delete(name);
      log(`moved ${name} to ${file}: the cache refused it (${reasons[0]}); queue its paths again once fixed`);
    }
    for (const { name, reason } of outcome.retry) {
      const attempts = (waiting.get(name)?.attempts ?? 0) + 1;
      if (drain) {
        waiting.set(name, { attempts, dueAt: Number.POSITIVE_INFINITY });
        stats.kept++;
        log(`keeping ${name} (failed: ${reason}); not tried again before the next run`);
        continue;
      }
      const delayMs = backoffMs(attempts - 1, backoff);
      waiting.set(name, { attempts, dueAt: Date.now() + delayMs });
      log(`keeping ${name} (attempt ${attempts} failed: ${reason}); trying again in ${(delayMs / 1000).toFixed(1)} s`);
    }
  };

  /** One batch of due entries; false when none was due. */
  const step = async (): Promise<boolean> => {
    const now = Date.now();
    const names = await listEntries(queueDir);
    const present = new Set(names);
    for (const name of waiting.keys()) if (!present.has(name)) waiting.delete(name);
    const due = names.filter((n) => (waiting.get(n)?.dueAt ?? 0) <= now);
    if (due.length === 0 || now < pause.until) return false;

    const entries: QueueEntry[] = [];
    let count = 0;
    for (const name of due) {
      if (entries.length > 0 && count >= batchPaths) break;
      const read = await readEntry(queueDir, name);
      if (!read) continue;
      for (const line of read.bad) log(`ignoring ${JSON.stringify(line)} in ${name}: not a store path`);
      entries.push(read.entry);
      count += read.entry.paths.length;
    }
    if (entries.length === 0) return true;
    try {
      await settle(await pushBatch(entries));
      pause = { attempts: 0, until: 0 };
    } catch (err) {
      // Nix or the cache could not be asked at all: nothing to tell entries apart by.
      if (drain) {
        stats.paused = true;
        closing = true;
        log(`cannot push now (${messageOf(err)}); ${names.length} queued, left for the next run`);
        return true;
      }
      const delayMs = backoffMs(pause.attempts, backoff, err instanceof PushFailure ? err.retryAfter : undefined);
      pause = { attempts: pause.attempts + 1, until: Date.now() + delayMs };
      log(
        `cannot push now (${messageOf(err)}); ${names.length} queued, trying again in ${(delayMs / 1000).toFixed(1)} s`,
      );
    }
    return true;
  };

  /** Sleeps until the next entry is due, a wake-up, or the rescan interval, whichever is first. */
  const sleep = async () => {
    const now = Date.now();
    let until = now + rescanMs;
    for (const { dueAt } of waiting.values()) until = Math.min(until, dueAt);
    // Nothing runs before a pause ends.
    until = Math.max(until, pause.until);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, until - now));
      wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(queueDir, wake);
    watcher.on('error', (err) =>
      log(`watching ${queueDir} failed (${err.message}); looking every ${rescanMs / 1000} s`),
    );
  } catch (err) {
    log(`cannot watch ${queueDir} (${messageOf(err)}); looking every ${rescanMs / 1000} s`);
  }

  const loop = (async () => {
    const stale = await removeStaleTemps(queueDir).catch(() => 0);
    if (stale > 0) log(`removed ${stale} half-written entr${stale === 1 ? 'y' : 'ies'} left by a queue-push that died`);
    while (!closing) {
      let worked = false;
      try {
        worked = await step();
      } catch (err) {
        log(`cannot read the queue ${queueDir}: ${messageOf(err)}`);
      }
      if (!worked && drain) break;
      if (!worked && !closing) await sleep();
    }
    return stats;
  })();

  return {
    wake,
    async close() {
      closing = true;
      watcher?.close();
      wake();
      await loop;
    },
    finished: loop.finally(() => watcher?.close()),
  };
}
