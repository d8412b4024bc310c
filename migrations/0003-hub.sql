-- 0003: the build hub. Projects, their evaluations (one job per attribute), and one build
-- record per derivation (keyed by the hash part of its store path) shared by every evaluation
-- and project that needs it, with the dependency edges between builds.
-- Store paths are basenames, times Unix milliseconds, lists JSON arrays, maps JSON objects.

CREATE TABLE projects (
  id          INTEGER PRIMARY KEY,
  name        TEXT    NOT NULL UNIQUE,
  flake       TEXT    NOT NULL,                -- git+https://…, git+file://…, path:…
  ref         TEXT,                            -- branch or ref evaluated by default; NULL: the flake's default
  systems     TEXT    NOT NULL,                -- JSON array
  attrs       TEXT    NOT NULL,                -- JSON array of checks | packages | nixosConfigurations
  cache_id    INTEGER NOT NULL REFERENCES caches (id),
  priority    INTEGER NOT NULL DEFAULT 0,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);

CREATE TABLE evaluations (
  id             INTEGER PRIMARY KEY,
  project_id     INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  ref            TEXT,                         -- the branch or ref asked for
  flake_url      TEXT    NOT NULL,             -- what was evaluated, before locking
  locked_url     TEXT,                         -- `url` of `nix flake metadata --json`
  revision       TEXT,
  status         TEXT    NOT NULL CHECK (status IN ('pending', 'evaluating', 'building', 'succeeded', 'failed', 'cancelled')),
  priority       INTEGER NOT NULL DEFAULT 0,
  error          TEXT,
  superseded_by  INTEGER REFERENCES evaluations (id) ON DELETE SET NULL,
  created_at     INTEGER NOT NULL,
  started_at     INTEGER,
  evaluated_at   INTEGER,
  finished_at    INTEGER
);
CREATE INDEX evaluations_project ON evaluations (project_id, id);
CREATE INDEX evaluations_live ON evaluations (status) WHERE status IN ('pending', 'evaluating', 'building');

-- One row per attribute; error is set when the attribute did not evaluate.
CREATE TABLE eval_jobs (
  eval_id   INTEGER NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
  attr      TEXT    NOT NULL,                  -- e.g. checks.x86_64-linux.foo
  system    TEXT,
  drv_path  TEXT,
  drv_hash  TEXT,
  outputs   TEXT,                              -- JSON {name: basename}
  error     TEXT,
  PRIMARY KEY (eval_id, attr)
) WITHOUT ROWID;
CREATE INDEX eval_jobs_drv ON eval_jobs (drv_hash);

CREATE TABLE builds (
  drv_hash           TEXT    PRIMARY KEY,
  drv_path           TEXT    NOT NULL,
  system             TEXT    NOT NULL,
  required_features  TEXT    NOT NULL,         -- JSON array
  outputs            TEXT    NOT NULL,         -- JSON {name: basename}
  queue              TEXT    NOT NULL,
  cache_id           INTEGER NOT NULL REFERENCES caches (id),
  status             TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dependency-failed', 'cancelled')),
  enqueued           INTEGER NOT NULL DEFAULT 0 CHECK (enqueued IN (0, 1)), -- a BullMQ job exists for this attempt
  priority           INTEGER NOT NULL DEFAULT 0,
  attempt            INTEGER NOT NULL DEFAULT 1,
  spoke              TEXT,
  failure_kind       TEXT CHECK (failure_kind IN ('build', 'timeout', 'infrastructure', 'cancelled')),
  error              TEXT,
  failed_dep         TEXT,                     -- drv_hash of the failed build a dependency-failure comes from
  log_path           TEXT,
  progress           TEXT,                     -- last progress a spoke reported (JSON)
  created_at         INTEGER NOT NULL,
  enqueued_at        INTEGER,
  started_at         INTEGER,
  finished_at        INTEGER,
  updated_at         INTEGER NOT NULL
);
CREATE INDEX builds_open ON builds (status) WHERE status IN ('queued', 'running');

CREATE TABLE build_outputs (
  hash_part  TEXT NOT NULL,
  drv_hash   TEXT NOT NULL REFERENCES builds (drv_hash) ON DELETE CASCADE,
  name       TEXT NOT NULL,
  PRIMARY KEY (hash_part, drv_hash)
) WITHOUT ROWID;

-- Edges between builds: drv_hash needs input_hash built first. Inputs whose outputs were
-- already in the cache when planned have no build and no edge.
CREATE TABLE build_deps (
  drv_hash    TEXT NOT NULL REFERENCES builds (drv_hash) ON DELETE CASCADE,
  input_hash  TEXT NOT NULL REFERENCES builds (drv_hash) ON DELETE CASCADE,
  PRIMARY KEY (drv_hash, input_hash)
) WITHOUT ROWID;
CREATE INDEX build_deps_reverse ON build_deps (input_hash, drv_hash);

-- Which builds each evaluation needs (its whole closure of builds, not only its jobs).
CREATE TABLE eval_builds (
  eval_id   INTEGER NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
  drv_hash  TEXT    NOT NULL REFERENCES builds (drv_hash) ON DELETE CASCADE,
  PRIMARY KEY (eval_id, drv_hash)
) WITHOUT ROWID;
CREATE INDEX eval_builds_drv ON eval_builds (drv_hash, eval_id);

-- Small hub bookkeeping: the last processed BullMQ event id per queue, and the like.
CREATE TABLE hub_state (
  key    TEXT PRIMARY KEY,
  value  TEXT NOT NULL
) WITHOUT ROWID;
