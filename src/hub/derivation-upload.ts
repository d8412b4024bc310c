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

interface Upload {
  path: string;
  references: string[];
  metadata: Record<string, unknown>;
  nar: () => Readable;
}

/**
 * Puts the closure of `drvPaths` (the `.drv` files, their input derivations' and the sources
 * they use) into the cache, so a spoke needs nothing but narhub. In-process, through the same
 * native upload the API offers (validated, compressed, signed, committed), dependencies first
 * and many at once: no Nix client, no HTTP. `.drv` files are read and their NARs made here
 * (with their text content address, as Nix registers them); sources come from
 * `nix path-info` and `nix-store --dump`. Returns how many paths were uploaded.
 */
export async function uploadDerivationClosure(
  cache: CacheService,
  cacheRow: CacheRow,
  drvPaths: readonly string[],
  opts: NixRunOptions & {
    maxSize: number;
    /** Hears of each `.drv` of the closure, with its text, once it is in the cache (with its own closure). */
    onReady?: (drvPath: string, text: Buffer) => void;
  },
): Promise<number> {
  // The .drv closure, from the files themselves: a .drv refers to its inputs and sources only.
  const drvs = new Map<string, { text: Buffer; inputDrvs: string[]; inputSrcs: string[] }>();
  let frontier = [...new Set(drvPaths)];
  while (frontier.length > 0) {
    const next: string[] = [];
    // CONCURRENCY files open at once, however wide the frontier (30,000 at once ran out of descriptors).
    await mapLimit(frontier, CONCURRENCY, async (p) => {
      if (drvs.has(p)) return;
      const text = await readFile(p).catch((err: NodeJS.ErrnoException) => {
        throw new NarhubError('UNAVAILABLE', `cannot read ${p} to upload it: ${err.message}`);
      });
      const drv = parseDerivation(text.toString('utf8'));
      const inputDrvs = Object.keys(drv.inputDrvs);
      drvs.set(p, { text, inputDrvs, inputSrcs: drv.inputSrcs });
      next.push(...inputDrvs);
    });
    frontier = [...new Set(next)].filter((p) => !drvs.has(p));
  }
  const sources = [...new Set([...drvs.values()].flatMap((d) => d.inputSrcs))];
  const wanted = new Set(cache.missingPaths(cacheRow, [...drvs.keys(), ...sources]));

  const uploads = new Map<string, Upload>();
  for (const [path, d] of drvs) {
    if (!wanted.has(path)) continue;
    const nar = Buffer.concat([...narFromTree({ type: 'regular', contents: d.text })]);
    const references = [...d.inputDrvs, ...d.inputSrcs].sort();
    uploads.set(path, {
      path,
      references,
      metadata: {
        storePath: path,
        narHash: formatHash(sha256Of(nar), 'nix32'),
        narSize: nar.length,
        references,
        ca: `text:${formatHash(sha256Of(d.text), 'nix32')}`,
      },
      nar: () => Readable.from([nar]),
    });
  }
  const missingSources = sources.filter((s) => wanted.has(s));
  if (missingSources.length > 0) {
    // Sources may refer to other store paths: their closure, as the store has it.
    const res = await runNix(
      ['path-info', '--extra-experimental-features', 'nix-command', '--json', '-r', ...missingSources],
      opts,
    );
    if (res.code !== 0)
      throw new NarhubError(
        'UNAVAILABLE',
        `nix path-info of the derivations' sources failed: ${res.stderr.trim().split('\n').pop() ?? res.code}`,
      );
    const infos = parsePathInfoJson(res.stdout);
    const absent = new Set(
      cache.missingPaths(
        cacheRow,
        infos.map((i) => i.path),
      ),
    );
    for (const info of infos) {
      if (!absent.has(info.path) || uploads.has(info.path)) continue;
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
        metadata,
        nar: () => dump(info.path, opts.env),
      });
    }
  }

  // What the cache had already is ready now (its references are there: it was committed).
  for (const [path, d] of drvs) if (!uploads.has(path)) opts.onReady?.(path, d.text);
  await inDependencyOrder(uploads, async (u) => {
    const line = Buffer.from(`${JSON.stringify(u.metadata)}\n`);
    const body = Readable.from(
      (async function* () {
        yield line;
        yield* u.nar();
      })(),
    );
    await cache.uploadPath(cacheRow, parseStorePath(u.path).hashPart, body, {
      maxSize: opts.maxSize,
      signal: opts.signal,
    });
    const drv = drvs.get(u.path);
    if (drv) opts.onReady?.(u.path, drv.text);
  });
  return uploads.size;
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
    for (const d of deps) dependents.set(d, [...(dependents.get(d) ?? []), u.path]);
  }
  const ready = [...waiting].filter(([, deps]) => deps.size === 0).map(([p]) => p);
  let running = 0;
  let failure: unknown;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      if (failure !== undefined) {
        if (running === 0) reject(failure);
        return;
      }
      if (ready.length === 0 && running === 0) {
        const stuck = [...waiting.keys()];
        if (stuck.length > 0)
          reject(new NarhubError('BAD_REQUEST', `derivation closure has a reference cycle through ${stuck[0]}`));
        else resolve();
        return;
      }
      while (running < CONCURRENCY && ready.length > 0) {
        const path = ready.shift()!;
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
