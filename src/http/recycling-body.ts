import { once } from 'node:events';
import { Readable, type Writable } from 'node:stream';
import type { BlobRead } from '../storage/blob-store.js';

/**
 * The body of a response streamed from storage. Where the store can reuse its read buffers
 * (`BlobRead.recycle`), each chunk goes back to it as soon as the socket has written it, so a
 * multi-GB NAR is served through a handful of buffers instead of a fresh one per MiB: at GB/s
 * that garbage made V8 run a full collection every few tens of MB and halved the throughput.
 * Otherwise the store's stream is the body, as is.
 */
export function responseBody(read: BlobRead): Readable {
  return read.recycle === undefined ? read.stream : new RecyclingBody(read.stream, read.recycle);
}

/**
 * What a route sends for a read from storage: the bytes themselves when the store read the
 * file whole (`BlobRead.bytes`: one write, no stream), otherwise `responseBody`.
 */
export function replyBody(read: BlobRead): Buffer | Readable {
  if (read.bytes === undefined) return responseBody(read);
  return Buffer.from(read.bytes.buffer, read.bytes.byteOffset, read.bytes.byteLength);
}

/**
 * Fastify sends a stream body with `body.pipe(res)`. This body answers `pipe` by writing the
 * source's chunks itself, each with a write callback that recycles it, honouring backpressure,
 * then ends the destination and itself (so end-of-stream watchers see a normal end). Read any
 * other way (`data`, async iteration), it simply passes the source's chunks on, recycling none.
 * Destroying it, or closing the destination early (a client going away), destroys the source.
 */
class RecyclingBody extends Readable {
  private readonly stopped = new AbortController();
  private pumping = false;
  private forwarding = false;

  constructor(
    private readonly source: Readable,
    private readonly recycle: (chunk: Uint8Array) => void,
  ) {
    super();
    source.once('error', (err) => this.destroy(err));
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    if (this.pumping || this.readableFlowing !== null) return super.pipe(destination, options);
    this.pumping = true;
    void this.pump(destination as unknown as Writable, options?.end !== false);
    return destination;
  }

  private async pump(destination: Writable, end: boolean): Promise<void> {
    const { signal } = this.stopped;
    // A destination closed early (the client went away) ends the body, whoever else notices.
    destination.once('close', () => {
      if (!destination.writableFinished) this.destroy();
    });
    try {
      for await (const chunk of this.source as AsyncIterable<Buffer>) {
        if (signal.aborted) return;
        const more = destination.write(chunk, (err) => {
          if (!err) this.recycle(chunk);
        });
        if (!more) await once(destination, 'drain', { signal });
      }
      if (signal.aborted) return;
      if (end) destination.end();
      this.push(null);
      this.resume();
    } catch (err) {
      if (!signal.aborted) this.destroy(err as Error);
    }
  }

  /** Only when read directly rather than piped: pass the source's chunks on. */
  override _read(): void {
    if (!this.forwarding) {
      this.forwarding = true;
      this.source.on('data', (chunk: Buffer) => {
        if (!this.push(chunk)) this.source.pause();
      });
      this.source.once('end', () => this.push(null));
    }
    this.source.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.stopped.abort();
    if (!this.source.destroyed) this.source.destroy(error ?? undefined);
    callback(error);
  }
}
