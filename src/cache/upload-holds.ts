import { randomUUID } from 'node:crypto';
import type { GcRepo } from '../db/gc-repo.js';

/** How long a hold outlives a process that died without releasing it. */
const HOLD_TTL_MS = 24 * 3_600_000;

/**
 * Holds keep GC off the paths an upload in flight relies on: its references (a narinfo being
 * committed must find them) and the path itself when it is uploaded again. They live in the
 * database, so a GC run by another process (`narhub gc` on the data directory) sees them too.
 */
export function createUploadHolds(deps: { gc: GcRepo; now?: () => number }) {
  const { gc } = deps;
  const now = deps.now ?? Date.now;
  return {
    /** Holds `hashParts` of the cache until `release` (or HOLD_TTL_MS); returns the release. */
    acquire(cacheId: number, hashParts: string[]): () => void {
      if (hashParts.length === 0) return () => undefined;
      const holder = randomUUID();
      gc.hold(holder, cacheId, hashParts, now() + HOLD_TTL_MS);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        gc.release(holder);
      };
    },
  };
}

export type UploadHolds = ReturnType<typeof createUploadHolds>;
