import { NarhubError } from '../errors.js';
import { formatHash, sha256Of } from '../nix/hash.js';
import type { NarRow } from '../db/nars-repo.js';
import type { BlobStore } from '../storage/blob-store.js';

/**
 * NAR files up to this size may have been written without waiting for the disk (`durable:
 * false`): small uploads, whose fsync would otherwise be most of their time.
 */
const UNSYNCED_MAX = 128 * 1024;

/** In-flight and finished syncs remembered, oldest forgotten first (a forgotten one is verified again). */
const REMEMBERED = 10_000;

/**
 * Group commit of small NAR files. Nix uploads a path as a NAR PUT, then its narinfo PUT, one
 * path at a time; waiting for the disk in both made every path pay two flushes in a row. A
 * small NAR (and its listing) is therefore written without fsync, recorded as pending (nothing
 * serves a pending NAR), and its fsync starts at once on a file thread, batched with whatever
 * else waits there. The commit that makes a path visible waits for it (`settle`), side by side
 * with the narinfo's own write, so a path is never visible before its NAR is durable.
 *
 * A pending small NAR this process did not sync itself was written by an earlier one, which may
 * have died in a power cut before the fsync: its bytes are read back and must hash to the
 * recorded FileHash and FileSize before they are synced and committed.
 */
export function createNarSync(store: BlobStore) {
  const syncs = new Map<string, Promise<void>>();
  const idOf = (cacheId: number, fileName: string) => `${cacheId}/${fileName}`;

  function remember(id: string, done: Promise<void>): void {
    done.catch(() => undefined);
    syncs.delete(id);
    syncs.set(id, done);
    if (syncs.size > REMEMBERED) syncs.delete(syncs.keys().next().value!);
  }

  async function verify(row: NarRow): Promise<void> {
    const read = await store.get(row.storageKey);
    let bytes: Uint8Array | undefined = read?.bytes;
    if (read && bytes === undefined) {
      const chunks: Buffer[] = [];
      for await (const chunk of read.stream) chunks.push(chunk as Buffer);
      bytes = Buffer.concat(chunks);
    }
    const fileHash = bytes === undefined ? undefined : formatHash(sha256Of(bytes), 'nix32');
    if (bytes?.length !== row.fileSize || fileHash !== row.fileHash) {
      throw new NarhubError(
        'NAR_NOT_UPLOADED',
        `the stored ${row.fileName} is not the file uploaded (lost in a crash); upload it again`,
      );
    }
    await store.sync?.([row.storageKey, ...(row.listingKey ? [row.listingKey] : [])]);
  }

  return {
    /** Starts making a small NAR file written with `durable: false`, and its listing, durable. */
    start(cacheId: number, fileName: string, keys: string[]): void {
      remember(idOf(cacheId, fileName), store.sync?.(keys) ?? Promise.resolve());
    },
    /** A NAR file written durably (streamed): nothing to wait for. */
    durable(cacheId: number, fileName: string): void {
      remember(idOf(cacheId, fileName), Promise.resolve());
    },
    /** True when this process wrote the NAR and its sync is under way or done. */
    known(row: NarRow): boolean {
      return syncs.has(idOf(row.cacheId, row.fileName));
    },
    /** Resolves once the NAR file of `row` is durable (and, if it came from an earlier process, verified). */
    settle(row: NarRow): Promise<void> {
      if (row.state === 'valid' || row.fileSize > UNSYNCED_MAX || store.sync === undefined) return Promise.resolve();
      const id = idOf(row.cacheId, row.fileName);
      let done = syncs.get(id);
      if (done === undefined) {
        const verified = verify(row);
        // A file that failed is verified again by the next commit (it may have been uploaded again).
        verified.catch(() => syncs.get(id) === verified && syncs.delete(id));
        remember(id, verified);
        done = verified;
      }
      return done;
    },
  };
}

export type NarSync = ReturnType<typeof createNarSync>;
