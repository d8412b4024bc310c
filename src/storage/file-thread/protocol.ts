// The messages between the file-thread pool (pool.ts) and a file thread (worker.ts).

/**
 * `write`: `data` into a new temp file (made `wx`, so never someone else's), fsynced, closed and
 * renamed to `target`, making the target's directory (and the temp dir) on demand, then the
 * target's directory fsynced (and the ones just made): durable and visible when answered.
 * `read`: the whole file if it is a regular file of at most `maxSize` bytes.
 * `sync`: files written earlier without fsync (`durable: false`) fsynced, then their directories.
 */
export type FileJob =
  | { type: 'write'; id: number; tempDir: string; temp: string; target: string; data: Uint8Array; durable: boolean }
  | { type: 'sync'; id: number; paths: string[] }
  | { type: 'read'; id: number; path: string; maxSize: number };

/** A failed step, with the errno code (`ENOSPC`, …) when there was one. */
export interface FileJobError {
  step: string;
  message: string;
  code?: string;
}

/** What a read found: nothing, something not a file, a file too large to read whole, or its bytes. */
export type WholeRead =
  | { found: 'missing' | 'not-file' }
  | { found: 'large'; size: number }
  | { found: 'bytes'; bytes: Uint8Array };

export type FileJobResult =
  | { id: number; ok: true }
  | ({ id: number } & WholeRead)
  | { id: number; error: FileJobError };
