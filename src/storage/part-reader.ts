import { Readable } from 'node:stream';
import { NarhubError } from '../errors.js';
import { isAbort, raceAbort } from '../io/abort.js';

type Body = Readable | AsyncIterable<Uint8Array> | Uint8Array;

/** Bytes of upload bodies held in memory right now, and the most ever held. */
export class BufferMeter {
  buffered = 0;
  peak = 0;

  hold(n: number): void {
    this.buffered += n;
    if (this.buffered > this.peak) this.peak = this.buffered;
  }

  release(n: number): void {
    this.buffered -= n;
  }
}

/**
 * Cuts a body into parts of exactly `partSize` bytes (the last may be shorter), pulling chunks
 * only when asked: memory is one part being filled plus at most one chunk read ahead, all of it
 * counted in `meter`.
 */
export class PartReader {
  /** Bytes the body yielded so far. */
  total = 0;
  private readonly iterator: AsyncIterator<unknown>;
  private readonly readable: Readable | undefined;
  private chunks: Uint8Array[] = [];
  private chunkBytes = 0;
  private ended = false;
  /** Set when the body itself failed, so its error is reported as is. */
  bodyError: unknown;

  constructor(
    body: Body,
    private readonly partSize: number,
    private readonly signal: AbortSignal | undefined,
    private readonly meter: BufferMeter,
  ) {
    if (body instanceof Uint8Array) {
      this.iterator = (body.byteLength === 0 ? [] : [body])[Symbol.iterator]() as unknown as AsyncIterator<unknown>;
      this.readable = undefined;
    } else {
      this.readable = body instanceof Readable ? body : undefined;
      this.iterator = body[Symbol.asyncIterator]() as AsyncIterator<unknown>;
    }
  }

  /** Pulls one chunk into the buffer; false at the end of the body. */
  private async pull(signal: AbortSignal | undefined): Promise<boolean> {
    if (this.ended) return false;
    let result: IteratorResult<unknown>;
    try {
      result = await raceAbort(Promise.resolve(this.iterator.next()), signal ?? this.signal);
    } catch (err) {
      if (!isAbort(err)) this.bodyError = err;
      throw err;
    }
    if (result.done) {
      this.ended = true;
      return false;
    }
    const chunk = result.value;
    if (!(chunk instanceof Uint8Array)) {
      throw new NarhubError('INTERNAL', `blob body yielded a ${typeof chunk}, not bytes`);
    }
    this.total += chunk.byteLength;
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk);
      this.chunkBytes += chunk.byteLength;
      this.meter.hold(chunk.byteLength);
    }
    return true;
  }

  /** The next part, or null once the body is exhausted. Its bytes stay held until released. */
  async next(signal?: AbortSignal): Promise<Buffer | null> {
    while (this.chunkBytes < this.partSize && (await this.pull(signal)));
    if (this.chunkBytes === 0) return null;
    const n = Math.min(this.partSize, this.chunkBytes);
    // One copy into a buffer of exactly the part's size; the chunks it came from are let go.
    const part = Buffer.allocUnsafe(n);
    this.meter.hold(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const take = Math.min(chunk.byteLength, n - filled);
      part.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), filled);
      filled += take;
      if (take === chunk.byteLength) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(take);
    }
    this.chunkBytes -= n;
    this.meter.release(n);
    return part;
  }

  /** Whether the body has no bytes left, reading ahead at most one chunk to find out. */
  async atEnd(): Promise<boolean> {
    while (this.chunkBytes === 0) if (!(await this.pull(undefined))) return true;
    return false;
  }

  /** Lets go of buffered chunks and stops the body (destroying a Readable, finishing a generator). */
  destroy(): void {
    this.meter.release(this.chunkBytes);
    this.chunks = [];
    this.chunkBytes = 0;
    if (this.ended) return;
    this.ended = true;
    if (this.readable) this.readable.destroy();
    // A generator blocked in an await finishes once it resumes; nobody waits for that.
    else void Promise.resolve(this.iterator.return?.()).catch(() => undefined);
  }
}
