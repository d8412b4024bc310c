-- 0006: garbage collection (policies, access times, pins, holds, runs) and key rotation.

-- A cache's policy. NULL keeps everything: retention in seconds since the last access, quota in
-- bytes of the NAR files its paths point at.
ALTER TABLE caches ADD COLUMN retention INTEGER CHECK (retention IS NULL OR retention > 0);
ALTER TABLE caches ADD COLUMN quota INTEGER CHECK (quota IS NULL OR quota >= 0);

-- When a path was last read (narinfo or NAR GET/HEAD) or uploaded again. Recorded in batches, so
-- it may lag by a few seconds.
ALTER TABLE store_paths ADD COLUMN accessed_at INTEGER NOT NULL DEFAULT 0;
UPDATE store_paths SET accessed_at = max(created_at, updated_at);
CREATE INDEX store_paths_deriver ON store_paths (cache_id, deriver) WHERE deriver IS NOT NULL;

-- A pinned path keeps its whole closure. store_path is a basename; expires_at NULL: never.
CREATE TABLE pins (
  cache_id    INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  name        TEXT    NOT NULL,
  store_path  TEXT    NOT NULL,
  expires_at  INTEGER,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (cache_id, name)
);
CREATE INDEX pins_path ON pins (cache_id, store_path);

-- Paths an upload in flight relies on (its references, itself when re-uploaded): GC leaves them
-- alone until the hold is released or expires (a crashed process releases nothing).
CREATE TABLE gc_holds (
  id          INTEGER PRIMARY KEY,
  holder      TEXT    NOT NULL,
  cache_id    INTEGER NOT NULL,
  hash_part   TEXT    NOT NULL,
  expires_at  INTEGER NOT NULL
);
CREATE INDEX gc_holds_path ON gc_holds (cache_id, hash_part);
CREATE INDEX gc_holds_holder ON gc_holds (holder);

-- Blobs in storage that no row describes, first seen at first_seen; removed by a later run once
-- older than the grace period (an upload writes its blob a moment before its row).
CREATE TABLE gc_orphans (
  storage_key  TEXT    PRIMARY KEY,
  cache_id     INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  first_seen   INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per completed (not dry) GC run of a cache, for `narhub gc` history and the metrics.
CREATE TABLE gc_runs (
  id             INTEGER PRIMARY KEY,
  cache_id       INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  started_at     INTEGER NOT NULL,
  finished_at    INTEGER NOT NULL,
  paths_removed  INTEGER NOT NULL,
  bytes_freed    INTEGER NOT NULL,
  files_removed  INTEGER NOT NULL
);
CREATE INDEX gc_runs_cache ON gc_runs (cache_id, id);

-- Key states: active (signs new paths; exactly one per cache), previous (its signatures kept and
-- served), retired (its signatures removed). The `active` column of 0001 follows state.
ALTER TABLE signing_keys ADD COLUMN state TEXT NOT NULL DEFAULT 'active'
  CHECK (state IN ('active', 'previous', 'retired'));
UPDATE signing_keys SET state = 'previous', active = 0
  WHERE id NOT IN (SELECT id FROM signing_keys k
                   WHERE k.generation = (SELECT max(generation) FROM signing_keys m WHERE m.cache_id = k.cache_id));
-- The rewrite of existing narinfos a key's change asks for (re-signing by a new active key,
-- removing a retired key's signatures): every path with id <= pass_target, done up to pass_cursor.
ALTER TABLE signing_keys ADD COLUMN pass_target INTEGER;
ALTER TABLE signing_keys ADD COLUMN pass_cursor INTEGER NOT NULL DEFAULT 0;
