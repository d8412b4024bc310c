import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { NarhubError } from '../errors.js';
import { parseDerivation } from '../nix/derivation.js';
import { formatHash, sha256Of } from '../nix/hash.js';
import { narFromTree } from '../nix/nar/nar-writer.js';
import { parsePathInfoJson } from '../nix/path-info.js';
import { parseStorePath } from '../nix/store-path.js';
import { mapLimit } from '../io/map-limit.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { CacheService } from '../cache/cache-service.js';
import { runNix, type NixRunOptions } from './nix-runner.js';

/** Uploads and `.drv` reads in flight at once: small files, so what they wait for is fsync, not CPU. */
const CONCURRENCY = 16;
/** Store paths asked about in one missing-paths query, and given to one `nix path-info`. */
const BATCH = 1_000;

interface Upload {
  path: string;
  references: string[];
  /** The upload's metadata line and NAR, made only when it is its turn (nothing is held before). */
  open(): Promise<{ metadata: Record<string, unknown>; nar: Readable; drvText?: Buffer }>;
}

/** What the walk keeps of a `.drv` the cache lacks: its references, not its text. */
interface MissingDrv {
  inputDrvs: string[];
  inputSrcs: string[];
}

function* batches<T>(items: readonly T[], size = BATCH): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

function readDrv(path: string): Promise<Buffer> {
  return readFile(path).catch((err: NodeJS.ErrnoException) => {
    throw new NarhubError('UNAVAILABLE', `cannot read ${path} to upload it: ${err.message}`);
  });
}

/**
 * Puts the closure of `drvPaths` (the `.drv` files, their input derivations' and the sources
 * they use) into the cache, so a spoke needs nothing but narhub. In-process, through the same
 * native upload the API offers (validated, compressed, signed, committed), dependencies first
 * and CONCURRENCY at once: no Nix client, no HTTP. `.drv` files are read and their NARs made here
 * (with their text content address, as Nix registers them); sources come from
 * `nix path-info` and `nix-store --dump`. Returns how many paths were uploaded.
 *
 * The walk goes down from `drvPaths` a batch at a time, with one missing-paths query per batch,
 * and never below what the cache has: a path is committed only after its references, so a
 * `.drv` in the cache has its whole closure there. Descriptors, processes and reads in flight
 * are bounded whatever the size of the closure, and `.drv` texts are read again when they are
 * uploaded rather than held.
 */
export async function uploadDerivationClosure(
  cache: CacheService,
  cacheRow: CacheRow,
  drvPaths: readonly string[],
  opts: NixRunOptions & {
    maxSize: number;
    /**
     * Hears of each of `drvPaths`, and of each `.drv` uploaded, with its text, once it is in the
     * cache (with its own closure).
     */
    onReady?: (drvPath: string, text: Buffer) => void;
  },
): Promise<number> {
  const roots = new Set(drvPaths);
  const drvs = new Map<string, MissingDrv>();
  const presentRoots: string[] = [];
  const sources = new Set<string>();
  const seen = new Set(roots);
  for (let level = [...roots]; level.length > 0; ) {
    const next: string[] = [];
    for (const batch of batches(level)) {
      const missing = cache.missingPaths(cacheRow, batch);
      const lacking = new Set(missing);
      for (const p of batch) if (!lacking.has(p) && roots.has(p)) presentRoots.push(p);
      await mapLimit(missing, CONCURRENCY, async (p) => {
        const drv = parseDerivation((await readDrv(p)).toString('utf8'));
        const inputDrvs = Object.keys(drv.inputDrvs);
        drvs.set(p, { inputDrvs, inputSrcs: drv.inputSrcs });
        for (const src of drv.inputSrcs) sources.add(src);
        for (const d of inputDrvs) {
          if (seen.has(d)) continue;
          seen.add(d);
          next.push(d);
        }
      });
    }
    level = next;
  }
  // What the cache had already is ready now (its references are there: it was committed).
  await mapLimit(presentRoots, CONCURRENCY, async (p) => opts.onReady?.(p, await readDrv(p)));

  const uploads = new Map<string, Upload>();
  for (const [path, d] of drvs) {
    const references = [...d.inputDrvs, ...d.inputSrcs].sort();
    uploads.set(path, {
      path,
      references,
      async open() {
        const text = await readDrv(path);
        const nar = Buffer.concat([...narFromTree({ type: 'regular', contents: text })]);
        const metadata = {
          storePath: path,
          narHash: formatHash(sha256Of(nar), 'nix32'),
          narSize: nar.length,
          references,
          ca: `text:${formatHash(sha256Of(text), 'nix32')}`,
        };
        return { metadata, nar: Readable.from([nar]), drvText: text };
      },
    });
  }
  for (const upload of await sourceUploads(cache, cacheRow, [...sources], opts)) {
    if (!uploads.has(upload.path)) uploads.set(upload.path, upload);
  }

  await inDependencyOrder(uploads, async (u) => {
    const { metadata, nar, drvText } = await u.open();
    const line = Buffer.from(`${JSON.stringify(metadata)}\n`);
    const body = Readable.from(
      (async function* () {
        yield line;
        yield* nar;
      })(),
    );
    await cache.uploadPath(cacheRow, parseStorePath(u.path).hashPart, body, {
      maxSize: opts.maxSize,
      signal: opts.signal,
    });
    if (drvText) opts.onReady?.(u.path, drvText);
  });
  return uploads.size;
}

/**
 * The uploads of the sources the cache lacks, with their closures as the store has them
 * (a source may refer to other store paths): `nix path-info -r` a batch at a time.
 */
async function sourceUploads(
  cache: CacheService,
  cacheRow: CacheRow,
  sources: readonly string[],
  opts: NixRunOptions,
): Promise<Upload[]> {
  const missing: string[] = [];
  for (const batch of batches(sources)) missing.push(...cache.missingPaths(cacheRow, batch));
  const uploads = new Map<string, Upload>();
  for (const batch of batches(missing)) {
    const res = await runNix(
      ['path-info', '--extra-experimental-features', 'nix-command', '--json', '-r', ...batch],
      opts,
    );
    if (res.code !== 0)
      throw new NarhubError(
        'UNAVAILABLE',
        `nix path-info of the derivations' sources failed: ${res.stderr.trim().split('\n').pop() ?? res.code}`,
      );
    const infos = parsePathInfoJson(res.stdout).filter((i) => !uploads.has(i.path));
    for (const some of batches(infos)) {
      const absent = new Set(
        cache.missingPaths(
          cacheRow,
          some.map((i) => i.path),
        ),
      );
      for (const info of some) {
        if (!absent.has(info.path)) continue;
        const metadata: Record<string, unknown> = {
          storePath: info.path,
          narHash: info.narHash,
          narSize: info.narSize,
          references: info.references,
        };
        if (info.ca) metadata.ca = info.ca;
        if (info.deriver) metadata.deriver = info.deriver;
        uploads.set(info.path, {
          path: info.path,
          references: info.references,
          open: async () => ({ metadata, nar: dump(info.path, opts.env) }),
        });
      }
    }
  }
  return [...uploads.values()];
}

/** `nix-store --dump PATH` as a stream that fails if the command does. */
function dump(path: string, env: NodeJS.ProcessEnv | undefined): Readable {
  const child = spawn('nix-store', ['--dump', path], { env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  const out = child.stdout;
  child.once('close', (code) => {
    if (code !== 0)
      out.destroy(
        new NarhubError('UNAVAILABLE', `nix-store --dump ${path} failed: ${stderr.trim().split('\n').pop() ?? code}`),
      );
  });
  return out;
}

/** Runs `fn` for every upload, each after the uploads of its references, CONCURRENCY at once. */
async function inDependencyOrder(uploads: Map<string, Upload>, fn: (u: Upload) => Promise<void>): Promise<void> {
  const waiting = new Map<string, Set<string>>();
  const dependents = new Map<string, string[]>();
  for (const u of uploads.values()) {
    const deps = new Set(u.references.filter((r) => r !== u.path && uploads.has(r)));
    waiting.set(u.path, deps);
    for (const d of deps) {
      const list = dependents.get(d);
      if (list) list.push(u.path);
      else dependents.set(d, [u.path]);
    }
  }
  const ready = [...waiting].filter(([, deps]) => deps.size === 0).map(([p]) => p);
  let taken = 0;
  let running = 0;
  let failure: unknown;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      if (failure !== undefined) {
        if (running === 0) reject(failure);
        return;
      }
      if (taken === ready.length && running === 0) {
        const stuck = [...waiting.keys()];
        if (stuck.length > 0)
          reject(new NarhubError('BAD_REQUEST', `derivation closure has a reference cycle through ${stuck[0]}`));
        else resolve();
        return;
      }
      while (running < CONCURRENCY && taken < ready.length) {
        const path = ready[taken++]!;
        waiting.delete(path);
        running++;
        fn(uploads.get(path)!).then(
          () => {
            running--;
            for (const d of dependents.get(path) ?? []) {
              const deps = waiting.get(d)!;
              deps.delete(path);
              if (deps.size === 0) ready.push(d);
            }
            pump();
          },
          (err: unknown) => {
            running--;
            failure ??= err;
            pump();
          },
        );
      }
    };
    pump();
  });
}
