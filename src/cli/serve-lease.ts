import type { Database } from 'better-sqlite3';
import { createServeLeasesRepo } from '../db/serve-leases-repo.js';
import { NarhubError } from '../errors.js';
import { ownerState, ownTempDirName } from '../storage/temp-owners.js';

/** Records that this `narhub serve` has the database open; the returned function withdraws it. */
export function holdServeLease(db: Database, listen: string): () => void {
  const leases = createServeLeasesRepo(db);
  const owner = ownTempDirName();
  leases.add({ owner, listen, startedAt: Date.now() });
  return () => leases.remove(owner);
}

/**
 * Refuses a GC in this process while a `narhub serve` runs on the same database: its uploads
 * take NAR locks only it holds (a NAR file GC deletes could be one an upload of the same name
 * just wrote, and the path committed without it), and the reads of its last seconds are only in
 * its memory. Leases of servers that no longer run are removed.
 */
export function refuseBesideServer(db: Database): void {
  const leases = createServeLeasesRepo(db);
  for (const lease of leases.list()) {
    if (ownerState(lease.owner) === 'dead') {
      leases.remove(lease.owner);
      continue;
    }
    throw new NarhubError(
      'UNAVAILABLE',
      `narhub serve (pid ${lease.owner.split('-')[1]}, ${lease.listen}) runs on this data directory: ` +
        'run GC through it, narhub gc --server URL (GC in another process cannot take its NAR locks)',
    );
  }
}
