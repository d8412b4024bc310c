-- 0008: the `narhub serve` processes that have this database open (issue 12). A GC run by another
-- process on the data directory refuses while one does: it cannot take that server's NAR locks
-- nor see its last reads. owner: the process as storage/temp-owners.ts names it (boot, pid, start
-- time), so a lease a killed server left is told from a live one; listen: where it serves.
CREATE TABLE serve_leases (
  owner TEXT PRIMARY KEY,
  listen TEXT NOT NULL,
  started_at INTEGER NOT NULL
);
