// State shared by the measurements of one run, each piece made on first use: the fixtures in
// /nix/store, the narhub that serves them with nginx beside it, and the Nix environments.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { hashPart, createNixEnv, generateKey, type NixEnv, type PathInfo } from './nix.js';
import { randomPath, smallPaths, usrLibPath } from './fixtures.js';
import { hasNarhubPush, NARHUB_CLI, startNarhub, type Narhub, type NarhubOptions } from './narhub.js';
import { startNginx, type Nginx } from './nginx.js';
import { execOk, rmTree, type ExecResult } from './proc.js';
import type { Scope } from './scope.js';
import { fmtBytes } from './stats.js';

export const MEASUREMENTS = [
  'narinfo',
  'nar-get',
  'nar-get-s3',
  'substitute',
  'ingest',
  'memory',
  'narinfo-under-push',
  'pull-through',
] as const;
export type MeasurementId = (typeof MEASUREMENTS)[number];

export interface Options {
  quick: boolean;
  only: MeasurementId[];
  out: string | undefined;
  /** Fixtures cache and per-run scratch space. */
  workDir: string;
  /** Overrides every measurement's repetitions. */
  reps: number | undefined;
  keep: boolean;
  /** Run narhub with --cpu-prof (profiles in the run directory). */
  cpuProf: boolean;
  /** Bytes of /usr/lib in the "1 GB" path. */
  bigBytes: number;
  smallCount: number;
  /** Bytes of the synthetic path of the memory measurement. */
  hugeBytes: number;
  /** Seconds per wrk run. */
  wrkSeconds: number;
}

/** A narhub serving the small paths and the big path in `main`, and nginx serving its storage. */
export interface Served {
  narhub: Narhub;
  nginx: Nginx;
  /** A Nix environment whose netrc holds this narhub's admin token. */
  nix: NixEnv;
  /** `/main/<hash>.narinfo` of every small path. */
  narinfoPaths: string[];
  /** `/main/nar/<file>` of the big path, and its size. */
  bigNar: { path: string; fileSize: number };
  publicKey: string;
}

export interface FileCache {
  dir: string;
  publicKey: string;
  secretKeyFile: string;
}

export class BenchContext {
  private readonly memo = new Map<string, Promise<unknown>>();
  private readonly started = performance.now();

  constructor(
    readonly options: Options,
    readonly scope: Scope,
    /** Scratch directory of this run (removed at the end unless --keep). */
    readonly runDir: string,
  ) {}

  reps(defaultFull: number, defaultQuick: number): number {
    return this.options.reps ?? (this.options.quick ? defaultQuick : defaultFull);
  }

  log(message: string): void {
    const t = ((performance.now() - this.started) / 1000).toFixed(0).padStart(4);
    process.stderr.write(`[bench ${t}s] ${message}\n`);
  }

  private once<T>(key: string, make: () => Promise<T>): Promise<T> {
    let p = this.memo.get(key) as Promise<T> | undefined;
    if (p === undefined) {
      p = make();
      this.memo.set(key, p);
    }
    return p;
  }

  dir(name: string): Promise<string> {
    const dir = join(this.runDir, name);
    return mkdir(dir, { recursive: true }).then(() => dir);
  }

  /** A Nix environment without credentials (building fixtures, substituting). */
  nix(): Promise<NixEnv> {
    return this.once('nix', async () => createNixEnv(await this.dir('nix')));
  }

  /** A Nix environment whose netrc carries `server`'s admin token (netrc matches hosts, not ports). */
  nixFor(server: Narhub): Promise<NixEnv> {
    return this.once(`nix-${server.label}`, async () =>
      createNixEnv(await this.dir(`nix-${server.label}`), {
        netrc: [{ host: '127.0.0.1', password: server.adminToken }],
      }),
    );
  }

  big(): Promise<PathInfo> {
    return this.once('big', async () => {
      this.log(`fixture: ${fmtBytes(this.options.bigBytes)} of /usr/lib as one store path`);
      const info = await usrLibPath(await this.nix(), this.options.workDir, this.options.bigBytes);
      this.log(`fixture: ${info.path} (NAR ${fmtBytes(info.narSize)})`);
      return info;
    });
  }

  small(): Promise<string[]> {
    return this.once('small', async () => {
      this.log(`fixture: ${this.options.smallCount} small paths`);
      return smallPaths(await this.nix(), this.options.workDir, this.options.smallCount);
    });
  }

  huge(): Promise<PathInfo> {
    return this.once('huge', async () => {
      this.log(
        `fixture: ${fmtBytes(this.options.hugeBytes)} of pseudo-random files as one store path (first time: minutes)`,
      );
      const info = await randomPath(await this.nix(), this.options.workDir, this.options.hugeBytes);
      this.log(`fixture: ${info.path} (NAR ${fmtBytes(info.narSize)})`);
      return info;
    });
  }

  pushAvailable(): Promise<boolean> {
    return this.once('push', () => hasNarhubPush());
  }

  async startNarhub(label: string, extra: Partial<NarhubOptions> = {}): Promise<Narhub> {
    const dir = await this.dir(`narhub-${label}`);
    this.log(`starting narhub (${label})`);
    return startNarhub(this.scope, {
      label,
      dataDir: join(dir, 'data'),
      logFile: join(dir, 'server.log'),
      cpuProfileDir: this.options.cpuProf ? await this.dir('profiles') : undefined,
      ...extra,
    });
  }

  /** `nix copy --to <cacheUrl>?compression=zstd PATHS` with the server's credentials. */
  async nixCopyTo(server: Narhub, cacheUrl: string, paths: string[]): Promise<ExecResult> {
    const nix = await this.nixFor(server);
    return nix.run('nix', ['copy', '--to', `${cacheUrl}?compression=zstd`, ...paths], { timeoutMs: 60 * 60_000 });
  }

  /** `narhub push <cacheUrl> PATHS` with the server's admin token. */
  async narhubPush(server: Narhub, cacheUrl: string, paths: string[]): Promise<ExecResult> {
    const nix = await this.nixFor(server);
    return execOk(process.execPath, [NARHUB_CLI, 'push', cacheUrl, ...paths, '--token', server.adminToken], {
      env: nix.env,
      timeoutMs: 60 * 60_000,
    });
  }

  /** The served narhub (see Served); the uploads use stock `nix copy`, as Nix users would. */
  served(): Promise<Served> {
    return this.once('served', async () => {
      const [big, small] = [await this.big(), await this.small()];
      const narhub = await this.startNarhub('served');
      const nix = await this.nixFor(narhub);
      this.log(`uploading ${small.length} small paths and the big path to narhub with nix copy`);
      await this.nixCopyTo(narhub, `${narhub.url}/main`, small);
      await this.nixCopyTo(narhub, `${narhub.url}/main`, [big.path]);
      const nginx = await startNginx(this.scope, {
        dir: await this.dir('nginx-served'),
        root: join(narhub.dataDir, 'store'),
      });
      const narinfo = await (await fetch(`${narhub.url}/main/${hashPart(big.path)}.narinfo`)).text();
      const url = /^URL: (\S+)$/m.exec(narinfo)?.[1];
      const fileSize = Number(/^FileSize: (\d+)$/m.exec(narinfo)?.[1]);
      if (url === undefined || !Number.isFinite(fileSize))
        throw new Error(`narinfo of the big path has no URL/FileSize:\n${narinfo}`);
      return {
        narhub,
        nginx,
        nix,
        narinfoPaths: small.map((p) => `/main/${hashPart(p)}.narinfo`),
        bigNar: { path: `/main/${url}`, fileSize },
        publicKey: await narhub.publicKey('main'),
      };
    });
  }

  /** The big path in a `file://` cache written (and signed) by Nix itself, for nginx to serve. */
  fileCache(): Promise<FileCache> {
    return this.once('file-cache', async () => {
      const nix = await this.nix();
      const big = await this.big();
      const key = await generateKey(nix, 'bench-file-1');
      const dir = await this.dir('file-cache');
      await rmTree(dir);
      this.log('writing the big path to a file:// cache with nix copy');
      await nix.run(
        'nix',
        ['copy', '--to', `file://${dir}?compression=zstd&secret-key=${key.secretKeyFile}`, big.path],
        { timeoutMs: 60 * 60_000 },
      );
      return { dir, publicKey: key.publicKey, secretKeyFile: key.secretKeyFile };
    });
  }
}
