import type { Database } from 'better-sqlite3';

export interface ServeLease {
  /** The server process, as `storage/temp-owners.ts` names processes. */
  owner: string;
  listen: string;
  startedAt: number;
}

/** The `narhub serve` processes that have the database open (a GC elsewhere must not run beside them). */
export function createServeLeasesRepo(db: Database) {
  const insert = db.prepare('INSERT OR REPLACE INTO serve_leases (owner, listen, started_at) VALUES (?, ?, ?)');
  const remove = db.prepare('DELETE FROM serve_leases WHERE owner = ?');
  const all = db.prepare<[], { owner: string; listen: string; started_at: number }>(
    'SELECT owner, listen, started_at FROM serve_leases ORDER BY started_at',
  );
  return {
    add(lease: ServeLease): void {
      insert.run(lease.owner, lease.listen, lease.startedAt);
    },
    remove(owner: string): void {
      remove.run(owner);
    },
    list(): ServeLease[] {
      return all.all().map((r) => ({ owner: r.owner, listen: r.listen, startedAt: r.started_at }));
    },
  };
}
