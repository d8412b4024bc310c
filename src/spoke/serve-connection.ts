import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import type { Derivation } from '../nix/derivation.js';
import {
  SERVE_MAGIC_1,
  SERVE_MAGIC_2,
  SERVE_PROTOCOL_VERSION,
  addToStoreNarHeader,
  buildDerivationRequest,
  dumpStorePathRequest,
  paddedLength,
  queryPathInfosRequest,
  queryValidPathsRequest,
  u64,
  type ServeBuildOptions,
  type ServePathInfo,
} from '../nix/serve-protocol.js';
import { lastNixError } from './failures.js';
import { killProcessTree } from './process-tree.js';

/** The server's stdout is paused once this much is buffered and unread. */
const READ_HIGH_WATER = 4 * 1024 * 1024;
const STDERR_TAIL = 16 * 1024;

/** The connection broke (the process died, was killed, or the protocol went out of step). */
export class ServeConnectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServeConnectionError';
  }
}

/** Reads exact byte counts from a stream, pausing it while enough is buffered. */
class ByteReader {
  private chunks: Buffer[] = [];
  private length = 0;
  private waiter: (() => void) | undefined;
  private closed: Error | undefined;

  constructor(
    private readonly src: Readable,
    private readonly closedError: () => Error,
  ) {
    src.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.length += chunk.length;
      if (this.length >= READ_HIGH_WATER) src.pause();
      this.wake();
    });
    src.on('end', () => this.close());
    src.on('error', () => this.close());
  }

  close(): void {
    this.closed ??= this.closedError();
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private async fill(n: number): Promise<void> {
    while (this.length < n) {
      if (this.closed) throw this.closed;
      this.src.resume();
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  private splice(n: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0]!;
        const take = Math.min(c.length, n - at);
        c.copy(out, at, 0, take);
        at += take;
        if (take === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(take);
      }
    }
    this.length -= n;
    if (this.length < READ_HIGH_WATER) this.src.resume();
    return out;
  }

  async take(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    await this.fill(n);
    return this.splice(n);
  }

  /** Between 1 and `max` bytes, as soon as any are there. */
  async some(max: number): Promise<Buffer> {
    await this.fill(1);
    return this.splice(Math.min(max, this.length));
  }

  async u64(): Promise<number> {
    const b = await this.take(8);
    const v = b.readBigUInt64LE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new ServeConnectionError(`nix-store --serve sent a number out of range (${v})`);
    return Number(v);
  }

  async string(): Promise<string> {
    const n = await this.u64();
    if (n > 64 * 1024 * 1024) throw new ServeConnectionError(`nix-store --serve sent a ${n}-byte string`);
    return (await this.take(paddedLength(n))).toString('utf8', 0, n);
  }

  async strings(): Promise<string[]> {
    const n = await this.u64();
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(await this.string());
    return out;
  }
}

export interface ServeConnectionOptions {
  /** `--store` argument (`auto` for the machine's store). */
  store: string;
  /** Further arguments (`--option name value` …). */
  args: readonly string[];
  env: NodeJS.ProcessEnv;
}

export interface ServeBuildResult {
  status: number;
  errorMsg: string;
  timesBuilt: number;
  startTime: number;
  stopTime: number;
}

/**
 * One `nix-store --serve --write` process: the spoke's build slot talks to Nix through it,
 * the way Hydra's queue runner talks to its builders, instead of starting a Nix client per
 * step. Commands run one at a time (the protocol has no tags); the caller serialises them.
 * The process runs in a process group of its own, so killing the connection kills the build
 * with it, and it ends by itself when its stdin closes (the spoke died): Nix watches the pipe.
 */
export class ServeConnection {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly reader: ByteReader;
  private stderrTail = '';
  private stderrListener: ((text: string) => void) | undefined;
  private dead: string | undefined;
  /** Milliseconds timestamp of the last output on stderr (for silence watchdogs). */
  lastOutputAt = Date.now();
  readonly exited: Promise<void>;

  private constructor(opts: ServeConnectionOptions) {
    const storeArgs = opts.store === 'auto' ? [] : ['--store', opts.store];
    this.child = spawn('nix-store', ['--serve', '--write', ...storeArgs, ...opts.args], {
      env: opts.env,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.child.once('close', () => resolve()));
    this.child.once('exit', (code, signal) =>
      this.markDead(`nix-store --serve exited (${signal ?? `status ${code}`})`),
    );
    this.child.once('error', (err) => this.markDead(`cannot run nix-store --serve: ${err.message}`));
    // Writes to a process that died fail here, and the read that follows says why.
    this.child.stdin.on('error', () => undefined);
    this.child.stderr.setEncoding('utf8').on('data', (text: string) => {
      this.lastOutputAt = Date.now();
      this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL);
      this.stderrListener?.(text);
    });
    this.child.stdout.once('end', () => this.markDead('nix-store --serve closed its output'));
    this.reader = new ByteReader(this.child.stdout, () => new ServeConnectionError(this.deathMessage()));
  }

  /** Starts the process and exchanges the greeting. */
  static async open(opts: ServeConnectionOptions): Promise<ServeConnection> {
    const conn = new ServeConnection(opts);
    try {
      conn.write(u64(SERVE_MAGIC_1));
      const magic = await conn.reader.u64();
      if (magic !== SERVE_MAGIC_2)
        throw new ServeConnectionError(`nix-store --serve answered with magic ${magic.toString(16)}`);
      const version = await conn.reader.u64();
      if (version >> 8 !== SERVE_PROTOCOL_VERSION >> 8)
        throw new ServeConnectionError(`nix-store --serve speaks protocol ${version >> 8}.x`);
      conn.write(u64(SERVE_PROTOCOL_VERSION));
    } catch (err) {
      conn.kill();
      throw err;
    }
    return conn;
  }

  get alive(): boolean {
    return this.dead === undefined;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Where the server's stderr (build logs, Nix's messages) goes while a command runs. */
  onStderr(listener: ((text: string) => void) | undefined): void {
    this.stderrListener = listener;
  }

  /** Nix's last `error:` line, if it printed one. */
  lastError(): string | undefined {
    return lastNixError(this.stderrTail);
  }

  /** Kills the process and everything it started (the build, its builder). */
  kill(): void {
    this.markDead('the connection was closed');
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null)
      killProcessTree(this.child.pid);
    this.reader.close();
  }

  private markDead(why: string): void {
    this.dead ??= why;
  }

  private deathMessage(): string {
    const error = this.lastError();
    return error ? `nix-store --serve failed: ${error}` : (this.dead ?? 'nix-store --serve closed its output');
  }

  private write(data: Buffer): void {
    if (this.dead) throw new ServeConnectionError(this.deathMessage());
    this.child.stdin.write(data);
  }

  /** The subset of `paths` valid in the store; `lock` keeps them from the garbage collector. */
  async queryValidPaths(paths: readonly string[], opts: { lock: boolean }): Promise<Set<string>> {
    this.write(queryValidPathsRequest(paths, { lock: opts.lock, substitute: false }));
    return new Set(await this.reader.strings());
  }

  /** Metadata of those of `paths` that are valid. */
  async queryPathInfos(paths: readonly string[]): Promise<ServePathInfo[]> {
    this.write(queryPathInfosRequest(paths));
    const infos: ServePathInfo[] = [];
    for (;;) {
      const path = await this.reader.string();
      if (path === '') return infos;
      const deriver = await this.reader.string();
      const references = await this.reader.strings();
      await this.reader.u64(); // download size
      const narSize = await this.reader.u64();
      const narHash = await this.reader.string();
      const ca = await this.reader.string();
      const signatures = await this.reader.strings();
      infos.push({
        path,
        deriver: deriver || undefined,
        references,
        narSize,
        narHash,
        ca: ca || undefined,
        signatures,
      });
    }
  }

  /**
   * Adds a path from its NAR (exactly `info.narSize` bytes from `nar`); Nix checks the NAR
   * hash and size. Signatures are not checked by Nix here: the caller has checked them.
   */
  async addToStoreNar(info: ServePathInfo, nar: AsyncIterable<Uint8Array>): Promise<void> {
    this.write(addToStoreNarHeader(info));
    let sent = 0;
    for await (const chunk of nar) {
      sent += chunk.length;
      if (sent > info.narSize) break;
      if (!this.child.stdin.write(chunk)) await Promise.race([once(this.child.stdin, 'drain'), this.exited]);
      if (this.dead) break;
    }
    if (sent !== info.narSize) {
      // The server is waiting for bytes that will never come: this connection is out of step.
      this.kill();
      throw new ServeConnectionError(
        `the NAR of ${info.path} has ${sent > info.narSize ? 'more' : 'fewer'} than its ${info.narSize} bytes`,
      );
    }
    const ok = await this.reader.u64();
    if (ok !== 1) throw new ServeConnectionError(`nix-store --serve did not accept ${info.path}`);
  }

  /** Builds a derivation whose inputs are all valid in the store. */
  async buildDerivation(
    drvPath: string,
    drv: Derivation,
    inputPaths: readonly string[],
    options: ServeBuildOptions,
  ): Promise<ServeBuildResult> {
    this.write(buildDerivationRequest(drvPath, drv, inputPaths, options));
    const status = await this.reader.u64();
    const errorMsg = await this.reader.string();
    const timesBuilt = await this.reader.u64();
    await this.reader.u64(); // isNonDeterministic
    const startTime = await this.reader.u64();
    const stopTime = await this.reader.u64();
    const realisations = await this.reader.u64();
    for (let i = 0; i < realisations * 2; i++) await this.reader.string();
    return { status, errorMsg, timesBuilt, startTime, stopTime };
  }

  /**
   * The NAR of a valid path, `narSize` bytes long (from `queryPathInfos`), as a stream. The
   * connection takes no other command until the stream has ended.
   */
  dumpStorePath(path: string, narSize: number): Readable {
    this.write(dumpStorePathRequest(path));
    let left = narSize;
    const reader = this.reader;
    const stream = new Readable({
      highWaterMark: 1024 * 1024,
      read() {
        if (left === 0) {
          this.push(null);
          return;
        }
        reader.some(Math.min(left, 1024 * 1024)).then(
          (chunk) => {
            left -= chunk.length;
            this.push(chunk);
          },
          (err: unknown) => this.destroy(err as Error),
        );
      },
    });
    // A reader that gives up early (the server answered before the whole NAR was sent) leaves
    // the rest of it in the pipe: the connection is out of step and must not be used again.
    stream.once('close', () => {
      if (left > 0) this.kill();
    });
    return stream;
  }

  /** Closes stdin (the server exits after its current command) and waits for the exit. */
  async close(): Promise<void> {
    this.markDead('the connection was closed');
    this.child.stdin.end();
    const timer = setTimeout(() => this.kill(), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}
