import { createApiClient, type ApiClient } from './api-client.js';
import type { CacheLocation } from './cache-url.js';
import type { ClientZstd } from './nar-compressor.js';
import { queryClosure, type NixCommands, type PathInfo } from './closure.js';
import type { Progress } from './progress.js';
import { type RetryPolicy, withRetries } from '../io/retry.js';
import { PushFailure, pushRetries } from './retry.js';

/** Store paths per missing-paths request (the server takes up to 10 000). */
const MISSING_QUERY_BATCH = 10_000;

/** How a closure is pushed, whoever found it. */
export interface PushSettings {
  location: CacheLocation;
  /** Uploads running at once (default 4). */
  jobs?: number;
  retry: RetryPolicy;
  progress: Progress;
  /**
   * Why a path the cache lacks must not be uploaded (e.g. over a size limit), or undefined. Such
   * a path, and every path the cache lacks that needs it, is left out: not attempted, and
   * reported in `leftOut`, not as a failure.
   */
  leaveOut?: ((info: PathInfo) => string | undefined) | undefined;
  /**
   * Upload paths the cache lacks even when one of its upstreams signs them (default false: such
   * a path is skipped, as Attic skips what its upstream cache keys sign, since narhub fetches it
   * from that upstream when a client or an upload needs it).
   */
  uploadUpstreamPaths?: boolean | undefined;
}

export interface PushOptions extends PushSettings {
  /** Store paths whose closures to push. */
  paths: string[];
  /** Value of the Authorization header, if any. */
  authorization?: string | undefined;
  nix?: NixCommands;
  /** How NARs are compressed before they are sent (`ApiClientOptions.zstd`). */
  zstd?: ClientZstd | null | undefined;
}

/** A path that could not be pushed, and whether trying again later may help. */
export interface FailedPath {
  path: string;
  reason: string;
  /** Connection trouble, 5xx, 429, a failed dump: worth another try later. */
  transient: boolean;
  /** The HTTP status of the refusal that made it fail (its own, or a reference's), when a server refused. */
  status?: number | undefined;
  /** The reference whose failure made this path fail without being tried. */
  dependsOn?: string | undefined;
}

export interface PushReport {
  /** Paths in the closure. */
  closure: number;
  /** Paths the cache already had. */
  present: number;
  pushed: { path: string; narSize: number; fileSize: number }[];
  failed: FailedPath[];
  /** Paths the cache lacks that `leaveOut` kept back, or that need one of those, and why. */
  leftOut: { path: string; reason: string }[];
  /** Paths the cache lacks that one of its upstreams signs: not uploaded (see `uploadUpstreamPaths`). */
  fromUpstreams: string[];
  seconds: number;
}

/**
 * `narhub push`: takes the closure of `paths` from the local store, asks the cache which paths
 * it lacks (one request), and uploads those with the native endpoint, `jobs` at a time,
 * dependencies first: a path starts only once every reference it lacked has been pushed. A path
 * whose reference failed is not attempted (the server would refuse it) and is reported with why.
 * Transient failures are retried with backoff; the rest fail at once.
 */
export async function push(options: PushOptions): Promise<PushReport> {
  const started = performance.now();
  // Store paths or anything nix resolves to one (e.g. a ./result symlink).
  const closure = await queryClosure(options.paths, options.nix);
  const client = createApiClient(
    options.location,
    options.authorization,
    options.nix,
    options.zstd === undefined ? {} : { zstd: options.zstd },
  );
  try {
    return await pushClosure(closure, client, options, started);
  } finally {
    client.close();
  }
}

/**
 * Pushes `closure` (every path with its metadata, closed under references) through `client`:
 * one missing-paths question, then the uploads, dependencies first. Throws a PushFailure only when
 * the cache cannot even say what it lacks; every other failure is in the report, path by path.
 */
export async function pushClosure(
  closure: PathInfo[],
  client: ApiClient,
  options: PushSettings,
  started = performance.now(),
): Promise<PushReport> {
  const { progress } = options;
  const attempts = options.retry.retries + 1;

  const missingList: string[] = [];
  const upstreamKeys = new Set<string>();
  for (let i = 0; i < closure.length; i += MISSING_QUERY_BATCH) {
    const batch = closure.slice(i, i + MISSING_QUERY_BATCH).map((p) => p.path);
    const answer = await withRetries(
      () => client.missingPaths(batch),
      pushRetries(options.retry),
      ({ attempt, delayMs, error }) =>
        progress.retrying('(missing-paths query)', { attempt, of: attempts, delayMs, reason: messageOf(error) }),
    ).catch((err: unknown) => {
      const cause = err instanceof PushFailure ? err : undefined;
      throw new PushFailure(
        `cannot ask ${options.location.base}/${options.location.cache} which paths it lacks: ${(err as Error).message}`,
        cause?.transient ?? false,
        cause?.retryAfter,
        cause?.status,
      );
    });
    missingList.push(...answer.missing);
    for (const name of answer.upstreamKeyNames) upstreamKeys.add(name);
  }

  const missing = new Map<string, PathInfo>();
  const byPath = new Map(closure.map((p) => [p.path, p]));
  for (const path of missingList) {
    const info = byPath.get(path);
    if (info) missing.set(path, info);
  }
  const report: PushReport = {
    closure: closure.length,
    present: closure.length - missing.size,
    pushed: [],
    failed: [],
    leftOut: [],
    fromUpstreams: [],
    seconds: 0,
  };
  if (!options.uploadUpstreamPaths && upstreamKeys.size > 0) {
    // Signed by an upstream's key, as Attic judges; and, since a key may sign what its cache no
    // longer (or never) had, confirmed by the server's lookup in its upstreams.
    const signed = [...missing.values()]
      .filter((info) => info.signatures.some((sig) => upstreamKeys.has(sig.slice(0, sig.indexOf(':')))))
      .map((info) => info.path);
    for (let i = 0; i < signed.length; i += MISSING_QUERY_BATCH) {
      const served = await withRetries(
        () => client.upstreamPaths(signed.slice(i, i + MISSING_QUERY_BATCH)),
        pushRetries(options.retry),
        ({ attempt, delayMs, error }) =>
          progress.retrying('(upstream-paths query)', { attempt, of: attempts, delayMs, reason: messageOf(error) }),
      ).catch(() => [] as string[]); // no answer: upload them, as without upstreams
      for (const path of served) {
        if (!missing.delete(path)) continue;
        report.fromUpstreams.push(path);
      }
    }
  }
  if (options.leaveOut) {
    for (const [path, reason] of leftOutOf(missing, options.leaveOut)) {
      missing.delete(path);
      report.leftOut.push({ path, reason });
    }
  }
  if (missing.size === 0) {
    report.seconds = (performance.now() - started) / 1000;
    return report;
  }

  // Dependencies first: what each missing path waits for, and who waits for it.
  const waitsFor = new Map<string, Set<string>>();
  const dependents = new Map<string, string[]>();
  for (const [path, info] of missing) {
    const deps = new Set(info.references.filter((r) => r !== path && missing.has(r)));
    waitsFor.set(path, deps);
    for (const d of deps) {
      const list = dependents.get(d);
      if (list) list.push(path);
      else dependents.set(d, [path]);
    }
  }
  const ready = [...missing.keys()].filter((p) => waitsFor.get(p)!.size === 0);
  const jobs = Math.max(1, options.jobs ?? 4);
  const totalBytes = [...missing.values()].reduce((n, p) => n + p.narSize, 0);
  progress.start(missing.size, totalBytes);

  const settled = new Set<string>();
  const fail = (path: string, reason: string, transient: boolean, status?: number, dependsOn?: string) => {
    if (settled.has(path)) return;
    settled.add(path);
    report.failed.push({ path, reason, transient, status, dependsOn });
    progress.failed(path, reason);
    // Everything that needed it cannot be committed either, for the same kind of reason.
    for (const d of dependents.get(path) ?? [])
      fail(d, `its reference ${path} was not pushed`, transient, status, path);
  };

  await new Promise<void>((resolve) => {
    let running = 0;
    const next = () => {
      while (running < jobs && ready.length > 0) {
        const path = ready.shift()!;
        if (settled.has(path)) continue;
        running++;
        void upload(missing.get(path)!).finally(() => {
          running--;
          next();
        });
      }
      if (running === 0 && ready.length === 0) resolve();
    };

    const upload = async (info: PathInfo) => {
      const t0 = performance.now();
      let sent = 0;
      try {
        const answer = await withRetries(
          () => {
            progress.bytes(-sent);
            sent = 0;
            return client.uploadPath(info, (n) => {
              sent += n;
              progress.bytes(n);
            });
          },
          pushRetries(options.retry),
          ({ attempt, delayMs, error }) =>
            progress.retrying(info.path, { attempt, of: attempts, delayMs, reason: messageOf(error) }),
        );
        settled.add(info.path);
        report.pushed.push({ path: info.path, narSize: info.narSize, fileSize: answer.fileSize });
        progress.pushed(info.path, {
          narSize: info.narSize,
          fileSize: answer.fileSize,
          seconds: (performance.now() - t0) / 1000,
          stored: answer.stored,
        });
        for (const d of dependents.get(info.path) ?? []) {
          const deps = waitsFor.get(d)!;
          deps.delete(info.path);
          if (deps.size === 0) ready.push(d);
        }
      } catch (err) {
        const failure = err instanceof PushFailure ? err : undefined;
        fail(info.path, err instanceof Error ? err.message : String(err), failure?.transient ?? false, failure?.status);
      }
    };

    next();
  });
  // Only a reference cycle among the missing paths (which Nix cannot produce) leaves any behind.
  for (const path of missing.keys()) {
    if (!settled.has(path)) fail(path, 'its references form a cycle', false);
  }
  progress.finish();
  report.seconds = (performance.now() - started) / 1000;
  return report;
}

/**
 * The paths among `missing` that `leaveOut` names, and those that need one of them (through
 * references among `missing`: what the cache has already needs no upload), each with why.
 */
function leftOutOf(
  missing: Map<string, PathInfo>,
  leaveOut: (info: PathInfo) => string | undefined,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const [path, info] of missing) {
    const why = leaveOut(info);
    if (why !== undefined) out.set(path, why);
  }
  // Until nothing changes: a closure is a few dozen references deep at most.
  for (let grew = out.size > 0; grew; ) {
    grew = false;
    for (const [path, info] of missing) {
      if (out.has(path)) continue;
      const needed = info.references.find((r) => r !== path && out.has(r));
      if (needed !== undefined) {
        out.set(path, `needs ${needed}, which is left out`);
        grew = true;
      }
    }
  }
  return out;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
