import type { NarsRepo } from '../db/nars-repo.js';
import type { BlobStore } from '../storage/blob-store.js';

/**
 * Removes NAR uploads that no narinfo claimed within the grace period. The row goes first, in
 * a check-and-delete that loses to a concurrent commit or re-upload, then the bytes.
 */
export function createPendingSweep(deps: { nars: NarsRepo; store: BlobStore; now?: () => number }) {
  const { nars, store } = deps;
  const now = deps.now ?? Date.now;
  return async function sweepPending(graceMs: number): Promise<{ removed: number }> {
    let removed = 0;
    for (const row of nars.stalePending(now() - graceMs)) {
      if (!nars.removePending(row)) continue;
      await store.delete(row.storageKey);
      if (row.listingKey) await store.delete(row.listingKey);
      removed++;
    }
    return { removed };
  };
}
