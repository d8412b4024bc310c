// `node dist/bench/event-loop.bench.js [--native-mb N] [--zstd-mb N] [--bzip2-mb N] [--reps N] [--skip-codec]`:
// how long narhub's event loop stalls while it ingests large uploads. A narhub app (the real
// cache service, local blob store, no fsync) listens in this process; curl, a separate process,
// uploads over a real socket, so only the server's work is on this loop. Measured:
//   - a native upload of an N MB NAR (default 200): validated, hashed and compressed to zstd
//     (level 3, 2 workers) in one pass on a codec thread;
//   - a Nix-style upload of a zstd NAR of N MB (default 200; `nix copy --to …?compression=zstd`):
//     the file hashed on one codec thread, decoded on another, validated and hashed on a third
//     stream (io/nar-pass.ts);
//   - a Nix-style upload of a bzip2 NAR of N MB (default 32; stock `nix copy` compresses with
//     bzip2): the same, decoded by the bzip2 codec;
//   - the bzip2 decoder alone on the same file, on a codec thread (narhub) and on the event loop
//     (unbzip2-stream, as narhub did before), for its throughput and what it does to the loop.
// Delays are the event loop's beyond its 10 ms sampling interval (monitorEventLoopDelay), so an
// idle loop shows about 0. Never part of `npm test` (test/integration/http/api-v1-event-loop
// checks the behaviour without timing anything). Prints a table and one JSON line.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createCacheService } from '../src/cache/cache-service.js';
import { defaultMigrationsDir, migrate } from '../src/db/migrate.js';
import { openDatabase } from '../src/db/open.js';
import { buildApp } from '../src/http/app.js';
import { createDecompressor } from '../src/io/compression.js';
import { parseNarInfo } from '../src/nix/narinfo.js';
import { encodeNix32 } from '../src/nix/nix32.js';
import { createLocalBlobStore } from '../src/storage/local-blob-store.js';

const { values } = parseArgs({
  options: {
    'native-mb': { type: 'string' },
    'zstd-mb': { type: 'string' },
    'bzip2-mb': { type: 'string' },
    reps: { type: 'string' },
    'skip-codec': { type: 'boolean' },
  },
});
const NATIVE_MB = Number(values['native-mb'] ?? 200);
const ZSTD_MB = Number(values['zstd-mb'] ?? 200);
const BZIP2_MB = Number(values['bzip2-mb'] ?? 32);
const REPS = Number(values.reps ?? 1);
const MiB = 1024 * 1024;
const RESOLUTION_MS = 10;

interface Row {
  what: string;
  seconds: number;
  /** MiB/s of uncompressed NAR. */
  throughput: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Event-loop delay (beyond the sampling interval, ms) while `work` runs, and its duration. */
async function measure(what: string, narBytes: number, work: () => Promise<unknown>): Promise<Row> {
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  const beyond = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  const started = performance.now();
  h.enable();
  await work();
  h.disable();
  const seconds = (performance.now() - started) / 1000;
  return {
    what,
    seconds,
    throughput: narBytes / MiB / seconds,
    p50Ms: beyond(h.percentile(50)),
    p99Ms: beyond(h.percentile(99)),
    maxMs: beyond(h.max),
  };
}

/** str(s) framing of the NAR format: u64 LE length, bytes, zero padding to 8. */
function str(bytes: Buffer): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([len, bytes, Buffer.alloc((8 - (bytes.length % 8)) % 8)]);
}

/**
 * Writes the NAR of one regular file of `contentBytes` (base64 of random bytes: compressible
 * like text, never repetitive) to `file`, after `prefix` blank bytes; returns its hash and size.
 */
async function writeNar(file: string, contentBytes: number, prefix = 0): Promise<{ narHash: string; narSize: number }> {
  const head = Buffer.concat(['nix-archive-1', '(', 'type', 'regular', 'contents'].map((s) => str(Buffer.from(s))));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(contentBytes));
  const hash = createHash('sha256');
  let narSize = 0;
  const out = createWriteStream(file);
  const write = (b: Buffer, nar = true) => {
    if (nar) {
      hash.update(b);
      narSize += b.length;
    }
    return new Promise<void>((resolve, reject) => out.write(b, (err) => (err ? reject(err) : resolve())));
  };
  if (prefix > 0) await write(Buffer.alloc(prefix, ' '), false);
  await write(head);
  await write(len);
  for (let done = 0; done < contentBytes; done += MiB)
    await write(Buffer.from(randomBytes((Math.min(MiB, contentBytes - done) / 4) * 3).toString('base64')));
  await write(str(Buffer.from(')')));
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return { narHash: `sha256:${encodeNix32(hash.digest())}`, narSize };
}

async function fileSha256Nix32(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return encodeNix32(hash.digest());
}

/** Runs a command; its stdout is returned, or written to `stdout` (resolved once on disk). */
function run(cmd: string, args: string[], opts: { stdout?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const written =
      opts.stdout === undefined
        ? (child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d)), Promise.resolve())
        : pipeline(child.stdout, createWriteStream(opts.stdout));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${cmd} exited ${code}: ${err}`));
      else written.then(() => resolve(out), reject);
    });
  });
}

/** curl -T: the upload comes from another process, over a real socket. */
async function curlPut(url: string, file: string, token: string, contentType: string): Promise<void> {
  const out = await run('curl', [
    '-sS',
    '-T',
    file,
    '-H',
    `Authorization: Bearer ${token}`,
    '-H',
    `Content-Type: ${contentType}`,
    '-w',
    '\n%{http_code}',
    url,
  ]);
  const status = out.trim().split('\n').at(-1);
  if (status !== '201' && status !== '204') throw new Error(`PUT ${url}: ${out}`);
}

// The decoder narhub used before: unbzip2-stream's own stream, on the event loop.
const unbzip2 = createRequire(import.meta.url)('unbzip2-stream') as () => {
  write(data: Buffer): boolean;
  end(): void;
  on(event: string, listener: (arg: never) => void): void;
};
class InlineBunzip2 extends Transform {
  private readonly inner = unbzip2();
  constructor() {
    super();
    this.inner.on('data', (data: Buffer) => this.push(data));
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.inner.write(chunk);
    callback();
  }
  override _flush(callback: TransformCallback): void {
    this.inner.end();
    callback();
  }
}

const sink = () =>
  new Writable({
    write(_chunk, _enc, cb) {
      cb();
    },
  });

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'narhub-loop-bench-'));
  const db = openDatabase(join(dir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dir, 'store'), fsync: false });
  const service = createCacheService({ db, store, keysDir: join(dir, 'keys') });
  const app = await buildApp({ service, maxNarSize: 4 * 1024 * MiB, maxSmallFileSize: MiB });
  try {
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    const rows: Row[] = [];
    const idle = await measure('idle loop (1 s)', 0, () => new Promise((resolve) => setTimeout(resolve, 1000)));
    /** A new public cache per measurement, with a token that may write to it. */
    const freshCache = async (cache: string) => {
      await service.registry.create(cache, { private: false, priority: 40 });
      return { cache, token: service.tokens.create({ cachePattern: cache, permission: 'write' }).token };
    };
    /** `nix copy`-style uploads of one compressed NAR file, REPS times, each to a fresh cache. */
    const nixStyleUploads = async (
      what: string,
      cachePrefix: string,
      file: string,
      fileName: string,
      narSize: number,
    ) => {
      for (let rep = 1; rep <= REPS; rep++) {
        const { cache, token } = await freshCache(`${cachePrefix}${rep}`);
        rows.push(
          await measure(what, narSize, () =>
            curlPut(`${address}/${cache}/nar/${fileName}`, file, token, 'application/x-nix-nar'),
          ),
        );
      }
    };
    rows.push({ ...idle, throughput: 0 });

    // Native upload: `<metadata line>\n<NAR>`; the line is written last, into a fixed-width gap.
    const nativeFile = join(dir, 'native.body');
    const LINE = 512;
    for (let rep = 1; rep <= REPS; rep++) {
      const { cache, token } = await freshCache(`native${rep}`);
      const hashPart = encodeNix32(randomBytes(20));
      const { narHash, narSize } = await writeNar(nativeFile, NATIVE_MB * MiB, LINE);
      const line = Buffer.alloc(LINE, ' ');
      line.write(JSON.stringify({ storePath: `/nix/store/${hashPart}-big`, narHash, narSize, references: [] }));
      line[LINE - 1] = 0x0a;
      const fh = await open(nativeFile, 'r+');
      await fh.write(line, 0, LINE, 0);
      await fh.close();
      rows.push(
        await measure(`native upload, ${NATIVE_MB} MiB NAR → zstd`, narSize, () =>
          curlPut(
            `${address}/api/v1/caches/${cache}/paths/${hashPart}`,
            nativeFile,
            token,
            'application/x-narhub-path',
          ),
        ),
      );
      const info = parseNarInfo((await app.inject({ method: 'GET', url: `/${cache}/${hashPart}.narinfo` })).body);
      if (info.narSize !== narSize || info.compression !== 'zstd')
        throw new Error(`unexpected narinfo after the native upload: ${JSON.stringify(info)}`);
    }
    await rm(nativeFile, { force: true });

    // Nix-style upload of a zstd NAR.
    if (ZSTD_MB > 0) {
      const zNar = join(dir, 'zstd.nar');
      const zFile = `${zNar}.zst`;
      const { narSize: zNarSize } = await writeNar(zNar, ZSTD_MB * MiB);
      await run('zstd', ['-q', '-3', '-T2', zNar, '-o', zFile]);
      await rm(zNar, { force: true });
      const zName = `${await fileSha256Nix32(zFile)}.nar.zst`;
      const zSize = (await stat(zFile)).size;
      await nixStyleUploads(
        `zstd upload, ${ZSTD_MB} MiB NAR (${(zSize / MiB).toFixed(1)} MiB .zst)`,
        'zstd',
        zFile,
        zName,
        zNarSize,
      );
      await rm(zFile, { force: true });
    }

    // Nix-style upload of a bzip2 NAR.
    const narFile = join(dir, 'bzip2.nar');
    const bz2File = `${narFile}.bz2`;
    const { narSize } = await writeNar(narFile, BZIP2_MB * MiB);
    await run('bzip2', ['-c', '-9', narFile], { stdout: bz2File });
    const bz2Size = (await stat(bz2File)).size;
    const fileName = `${await fileSha256Nix32(bz2File)}.nar.bz2`;
    await nixStyleUploads(
      `bzip2 upload, ${BZIP2_MB} MiB NAR (${(bz2Size / MiB).toFixed(1)} MiB .bz2)`,
      'bzip',
      bz2File,
      fileName,
      narSize,
    );

    if (values['skip-codec'] !== true) {
      for (let rep = 1; rep <= REPS; rep++) {
        rows.push(
          await measure('bzip2 decoder alone, codec thread', narSize, () =>
            pipeline(createReadStream(bz2File), createDecompressor('bzip2'), sink()),
          ),
        );
        rows.push(
          await measure('bzip2 decoder alone, on the loop (before)', narSize, () =>
            pipeline(createReadStream(bz2File), new InlineBunzip2(), sink()),
          ),
        );
      }
    }

    const ms = (x: number) => `${x.toFixed(1)} ms`.padStart(10);
    const header = ['measurement'.padEnd(50), 'time'.padStart(8), 'MiB/s'.padStart(8)];
    console.log([...header, 'p50'.padStart(10), 'p99'.padStart(10), 'max'.padStart(10)].join(' '));
    for (const r of rows) {
      const time = `${r.seconds.toFixed(2)} s`.padStart(8);
      const throughput = (r.throughput > 0 ? r.throughput.toFixed(1) : '-').padStart(8);
      console.log([r.what.padEnd(50), time, throughput, ms(r.p50Ms), ms(r.p99Ms), ms(r.maxMs)].join(' '));
    }
    console.log(
      JSON.stringify({ bench: 'event-loop', nativeMiB: NATIVE_MB, zstdMiB: ZSTD_MB, bzip2MiB: BZIP2_MB, rows }),
    );
  } finally {
    await app.close();
    await store.close();
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
