// What a codec is to the codec thread that drives it (io/codec-thread/worker.ts).

/**
 * Passes output on (to the main thread or a linked stream). It takes the chunk's buffer along
 * (detaching it) when the chunk is most of it, so a codec emits only buffers it will not write
 * to again.
 */
export type Emit = (chunk: Uint8Array) => void;

/** A codec as the host drives it, in bounded units of work. */
export interface Codec {
  /**
   * Takes input. The buffer returns to the main thread once this returns, or, if it returns a
   * promise, once that settles: until then the codec may keep reading it.
   */
  write(input: Uint8Array): void | Promise<void>;
  /** No more input; a returned promise settles once the codec has had all of it decoded. */
  end(): void | Promise<void>;
  /** One bounded unit of work; false when none is possible until more input (after end: done). */
  step(): boolean;
  /** Reported with `end`. */
  result?(): unknown;
  /** The stream was dropped: free what the codec holds. */
  destroy?(): void;
}

/** What a codec may use of its host. */
export interface Host {
  emit: Emit;
  /** Asks for a step: work that completed elsewhere (libuv's pool, liblzma's thread) is in. */
  wake(): void;
  /** The output window is full: produce no more until woken. */
  full(): boolean;
  /** An output buffer a linked stream has given back, if any. */
  spare(): ArrayBuffer | undefined;
}

/**
 * Where a decoder's output goes: `take` gets each piece, valid only during the call (the
 * decoder reuses its buffer); `full` says the output window is full, so a decoder whose work
 * completes elsewhere stops until `wake`s come again.
 */
export interface DecoderOutput {
  take(chunk: Uint8Array): void;
  full(): boolean;
}

/**
 * Output a stream may have sent that the main thread has not passed on yet: past this the
 * stream stops (its input slabs wait at the thread, unacknowledged, which stops its writer in
 * turn). One unit of work may go beyond it: a slab's compressed output or one bzip2 block.
 */
export const OUTPUT_WINDOW = 2 * 1024 * 1024;

/** Decoded output is produced in pieces of at most this size (one step of the zstd decoder). */
export const DECODE_CHUNK = 1024 * 1024;
