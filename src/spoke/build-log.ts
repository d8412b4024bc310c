import { createWriteStream, type WriteStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import { logStreamKey } from '../protocol/build-jobs.js';

/** Largest log kept for the cache (narhub's default `maxSmallFileSize` is 64 MiB). */
const MAX_LOG_BYTES = 64 * 1024 * 1024 - 4096;
/** Stream entries kept in Redis (`XADD … MAXLEN ~`); with ≤ 16 KiB per entry, at most ~32 MiB. */
const LOG_STREAM_MAXLEN = 2000;
/** A finished stream is kept this long for late readers, then Redis drops it. */
const LOG_STREAM_TTL_SECONDS = 24 * 3600;
const ENTRY_CHARS = 16 * 1024;
const FLUSH_MS = 200;
/** Text waiting for Redis beyond this is dropped from the live view (never from the stored log). */
const MAX_PENDING_CHARS = 1024 * 1024;
const FINISH_WAIT_MS = 10_000;
/** A log is kept in memory up to this size, and only a longer one goes to the spool file. */
const IN_MEMORY_BYTES = 1024 * 1024;

/**
 * One build's log, as it comes: kept for the cache (capped at MAX_LOG_BYTES, uploaded at the
 * end) in memory while small, as most logs are, and in a spool file once it passes
 * IN_MEMORY_BYTES; and streamed live to the Redis stream `logStreamKey(drvHash)` in batches
 * (`XADD … MAXLEN ~ … * data <chunk>`), ended by an `eof 1` entry. A new attempt
 * starts the stream afresh (DEL). Redis trouble never slows or fails the build: batches that
 * cannot be written are dropped from the live view and counted.
 */
export class BuildLog {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #file: string;
  /** The spool file, once the log outgrew memory. */
  #out: WriteStream | undefined;
  #memory: string[] = [];
  #bytes = 0;
  #truncated = false;
  #closed = false;
  #pending = '';
  #dropped = 0;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #redisFailures = 0;
  readonly #onRedisError: (err: unknown) => void;

  private constructor(redis: Redis, drvHash: string, file: string, onRedisError: (err: unknown) => void) {
    this.#redis = redis;
    this.#key = logStreamKey(drvHash);
    this.#file = file;
    this.#onRedisError = onRedisError;
  }

  /** Starts a log: a fresh stream in Redis (and a spool file if it grows large). */
  static async open(
    redis: Redis,
    drvHash: string,
    file: string,
    onRedisError: (err: unknown) => void,
  ): Promise<BuildLog> {
    const log = new BuildLog(redis, drvHash, file, onRedisError);
    log.#enqueue(async () => {
      await redis.del(log.#key);
    });
    return log;
  }

  /** Bytes kept for the stored log so far. */
  get bytes(): number {
    return this.#bytes;
  }

  write(text: string): void {
    if (text === '' || this.#closed) return;
    this.#spool(text);
    if (this.#pending.length + text.length > MAX_PENDING_CHARS) {
      this.#dropped += text.length;
    } else {
      this.#pending += text;
    }
    this.#timer ??= setTimeout(() => this.#flush(), FLUSH_MS);
  }

  /** Flushes what is pending to the live stream and closes the spool file; `write` is ignored afterwards. */
  async closeFile(): Promise<void> {
    this.#flush();
    this.#closed = true;
    const out = this.#out;
    if (out) await new Promise<void>((resolve) => out.end(resolve));
  }

  /** Ends the live stream with `eof 1` (after the stored log is in the cache, so readers can switch to it). */
  async end(): Promise<void> {
    this.#flush();
    this.#closed = true;
    this.#append([['eof', '1']]);
    // Redis being away must not hold the job: wait for the stream a bounded time only.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#chain, new Promise<void>((resolve) => (timer = setTimeout(resolve, FINISH_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** The stored log (after closeFile). */
  async contents(): Promise<Buffer> {
    return this.#out ? readFile(this.#file) : Buffer.from(this.#memory.join(''));
  }

  async dispose(): Promise<void> {
    clearTimeout(this.#timer);
    this.#closed = true;
    this.#memory = [];
    if (!this.#out) return;
    this.#out.destroy();
    await rm(this.#file, { force: true });
  }

  #spool(text: string): void {
    if (this.#truncated) return;
    const size = Buffer.byteLength(text);
    if (this.#bytes + size <= MAX_LOG_BYTES) {
      this.#keep(text, size);
      return;
    }
    const note = `\n[narhub: log truncated at ${MAX_LOG_BYTES} bytes]\n`;
    this.#keep(note, Buffer.byteLength(note));
    this.#truncated = true;
  }

  #keep(text: string, size: number): void {
    this.#bytes += size;
    if (this.#out) {
      this.#out.write(text);
      return;
    }
    this.#memory.push(text);
    if (this.#bytes <= IN_MEMORY_BYTES) return;
    // Grown too large for memory: everything so far, and from now on, goes to the file.
    this.#out = createWriteStream(this.#file, { mode: 0o600 });
    this.#out.on('error', () => undefined);
    this.#out.write(this.#memory.join(''));
    this.#memory = [];
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    let text = this.#pending;
    this.#pending = '';
    if (this.#dropped > 0) {
      text += `\n[narhub: ${this.#dropped} characters left out of the live log]\n`;
      this.#dropped = 0;
    }
    if (text === '') return;
    const entries: string[] = [];
    for (let i = 0; i < text.length; i += ENTRY_CHARS) entries.push(text.slice(i, i + ENTRY_CHARS));
    this.#append(entries.map((entry) => ['data', entry]));
  }

  /** Adds stream entries (field, value pairs) and renews the stream's expiry, in one round trip. */
  #append(entries: string[][]): void {
    this.#enqueue(async () => {
      const batch = this.#redis.pipeline();
      for (const fields of entries) batch.xadd(this.#key, 'MAXLEN', '~', String(LOG_STREAM_MAXLEN), '*', ...fields);
      batch.expire(this.#key, LOG_STREAM_TTL_SECONDS);
      // exec resolves with each command's error rather than rejecting.
      const failed = (await batch.exec())?.find(([err]) => err);
      if (failed) throw failed[0];
    });
  }

  #enqueue(step: () => Promise<void>): void {
    this.#chain = this.#chain.then(step).catch((err: unknown) => {
      // Report the first failure of a log only; the build goes on regardless.
      if (this.#redisFailures++ === 0) this.#onRedisError(err);
    });
  }
}
