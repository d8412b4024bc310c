-- 0001: the binary-cache core.
-- Forward-only: never edit this file once merged; add a new numbered file instead.
-- Times are Unix milliseconds. Store paths are kept as basenames (`<hash>-<name>`).

CREATE TABLE caches (
  id          INTEGER PRIMARY KEY,
  name        TEXT    NOT NULL UNIQUE,
  private     INTEGER NOT NULL DEFAULT 0 CHECK (private IN (0, 1)),
  priority    INTEGER NOT NULL DEFAULT 40,
  created_at  INTEGER NOT NULL
);

-- The secret half lives in a file (mode 0600) named by secret_key_file, never in the database.
CREATE TABLE signing_keys (
  id               INTEGER PRIMARY KEY,
  cache_id         INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  name             TEXT    NOT NULL,
  public_key       TEXT    NOT NULL,
  secret_key_file  TEXT    NOT NULL,
  generation       INTEGER NOT NULL,
  active           INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
  created_at       INTEGER NOT NULL,
  UNIQUE (cache_id, name)
);

-- One row per stored file under nar/. `pending` until a narinfo claims it; only `valid` blobs
-- are ever served or answered 200 to HEAD.
CREATE TABLE nars (
  id           INTEGER PRIMARY KEY,
  cache_id     INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  file_name    TEXT    NOT NULL,              -- e.g. 0abc….nar.zst (the part after nar/)
  storage_key  TEXT    NOT NULL,
  compression  TEXT    NOT NULL,
  file_hash    TEXT    NOT NULL,              -- sha256:<nix32> of the stored bytes
  file_size    INTEGER NOT NULL,
  nar_hash     TEXT    NOT NULL,              -- sha256:<nix32> of the uncompressed NAR
  nar_size     INTEGER NOT NULL,
  listing_key  TEXT,                          -- the .ls narhub built while validating
  state        TEXT    NOT NULL CHECK (state IN ('pending', 'valid')),
  created_at   INTEGER NOT NULL,
  UNIQUE (cache_id, file_name)
);
CREATE INDEX nars_pending ON nars (state, created_at) WHERE state = 'pending';

CREATE TABLE store_paths (
  id          INTEGER PRIMARY KEY,
  cache_id    INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  hash_part   TEXT    NOT NULL,
  name        TEXT    NOT NULL,
  nar_id      INTEGER NOT NULL REFERENCES nars (id),
  deriver     TEXT,
  ca          TEXT,
  system      TEXT,
  narinfo     TEXT    NOT NULL,               -- the signed narinfo, served as is
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  UNIQUE (cache_id, hash_part)
);
CREATE INDEX store_paths_nar ON store_paths (nar_id);

CREATE TABLE path_references (
  path_id    INTEGER NOT NULL REFERENCES store_paths (id) ON DELETE CASCADE,
  reference  TEXT    NOT NULL,                -- basename
  PRIMARY KEY (path_id, reference)
) WITHOUT ROWID;
CREATE INDEX path_references_reverse ON path_references (reference);

CREATE TABLE signatures (
  path_id  INTEGER NOT NULL REFERENCES store_paths (id) ON DELETE CASCADE,
  sig      TEXT    NOT NULL,                  -- keyname:base64
  PRIMARY KEY (path_id, sig)
) WITHOUT ROWID;

-- Small files addressed by name: build logs, listings, realisations, debuginfo entries.
CREATE TABLE logs (
  cache_id          INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  drv               TEXT    NOT NULL,         -- derivation basename
  storage_key       TEXT    NOT NULL,
  size              INTEGER NOT NULL,
  content_type      TEXT    NOT NULL,
  content_encoding  TEXT,
  created_at        INTEGER NOT NULL,
  PRIMARY KEY (cache_id, drv)
);

CREATE TABLE listings (
  cache_id          INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  hash_part         TEXT    NOT NULL,
  storage_key       TEXT    NOT NULL,
  size              INTEGER NOT NULL,
  content_encoding  TEXT,
  created_at        INTEGER NOT NULL,
  PRIMARY KEY (cache_id, hash_part)
);

CREATE TABLE realisations (
  cache_id          INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  layout            TEXT    NOT NULL CHECK (layout IN ('realisations', 'build-trace-v2')),
  id                TEXT    NOT NULL,         -- `sha256:<hex>!out` or `<drv>/<out>`
  storage_key       TEXT    NOT NULL,
  size              INTEGER NOT NULL,
  content_encoding  TEXT,
  created_at        INTEGER NOT NULL,
  PRIMARY KEY (cache_id, layout, id)
);

CREATE TABLE debuginfo (
  cache_id     INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  build_id     TEXT    NOT NULL,              -- 40 hex
  storage_key  TEXT    NOT NULL,
  size         INTEGER NOT NULL,
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (cache_id, build_id)
);

-- Only a SHA-256 of each token is stored. cache_pattern is a cache name or a glob (`*`, `team-*`).
CREATE TABLE tokens (
  id             TEXT    PRIMARY KEY,
  name           TEXT,
  token_hash     TEXT    NOT NULL UNIQUE,
  cache_pattern  TEXT    NOT NULL,
  permission     TEXT    NOT NULL CHECK (permission IN ('read', 'write', 'admin')),
  expires_at     INTEGER,
  revoked_at     INTEGER,
  created_at     INTEGER NOT NULL,
  last_used_at   INTEGER
);
