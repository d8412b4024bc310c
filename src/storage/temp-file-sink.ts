import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { fsStep, isMissing } from './fs-errors.js';
import { writevAll } from './writev-all.js';

/** Creates a put's temporary file (`wx`: never someone else's), and its directory if it is gone. */
export async function openTemp(tempDir: string, temp: string): Promise<FileHandle> {
  try {
    return await open(temp, 'wx');
  } catch (err) {
    if (!isMissing(err)) throw err;
    // Recreated on demand in case someone cleared the temp dir while the store was running.
    await mkdir(tempDir, { recursive: true });
    return open(temp, 'wx');
  }
}

/** Writes queued while one is in flight are joined into one writev of up to about this much. */
const SINK_HIGH_WATER_MARK = 1024 * 1024;

/**
 * The file side of a streamed put. Each write takes every chunk that queued while the one
 * before it ran, in one writev(2): a NAR arriving in 64 KiB socket reads is written in pieces
 * of up to a megabyte, with no copy to join them, and a sixteenth of the syscalls and thread
 * pool trips. A write finishing is the backpressure.
 */
export class TempFileSink extends Writable {
  size = 0;
  private fh: FileHandle | undefined;

  constructor(
    private readonly key: string,
    private readonly opening: Promise<FileHandle>,
  ) {
    super({ highWaterMark: SINK_HIGH_WATER_MARK });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    fsStep('create temp file', this.key, () => this.opening).then((fh) => {
      this.fh = fh;
      callback();
    }, callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writeChunks([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.writeChunks(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  private writeChunks(buffers: Buffer[], callback: (error?: Error | null) => void): void {
    fsStep('write', this.key, () => writevAll(this.fh!, buffers)).then((written) => {
      this.size += written;
      callback();
    }, callback);
  }
}
