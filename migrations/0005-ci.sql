-- 0005: the hub as a team's CI. Projects bound to a forge repository, evaluations recorded
-- against their jobset (a branch or `pr-N`), commit and trigger, tokens that may only trigger
-- one project's evaluations, fork pull requests waiting for approval, what was last seen on a
-- polled remote, forge reports (check runs or commit statuses) waiting to be sent, browser
-- sessions, and outgoing notifications.

ALTER TABLE projects ADD COLUMN forge_repo TEXT;                 -- OWNER/REPO on the configured forge
ALTER TABLE projects ADD COLUMN fork_policy TEXT NOT NULL DEFAULT 'collaborators'
  CHECK (fork_policy IN ('collaborators', 'users', 'everyone'));
ALTER TABLE projects ADD COLUMN fork_users TEXT NOT NULL DEFAULT '[]';  -- JSON array, for fork_policy 'users'
ALTER TABLE projects ADD COLUMN poll_interval INTEGER;           -- seconds between `git ls-remote`s; NULL: no polling
ALTER TABLE projects ADD COLUMN notify_url TEXT;                 -- outgoing webhook
ALTER TABLE projects ADD COLUMN notify_secret_file TEXT;         -- its HMAC key, a file (mode 0600) under the data directory
CREATE INDEX projects_forge_repo ON projects (forge_repo) WHERE forge_repo IS NOT NULL;

ALTER TABLE evaluations ADD COLUMN jobset TEXT;                  -- branch name or pr-N; NULL for a bare commit
ALTER TABLE evaluations ADD COLUMN commit_sha TEXT;              -- the commit asked for (a push, a PR head, --ref SHA)
ALTER TABLE evaluations ADD COLUMN trigger TEXT NOT NULL DEFAULT 'manual'
  CHECK (trigger IN ('manual', 'push', 'pull_request', 'poll', 'trigger', 'approval'));
ALTER TABLE evaluations ADD COLUMN pr_number INTEGER;
ALTER TABLE evaluations ADD COLUMN triggered_by TEXT;            -- forge login or token name
ALTER TABLE evaluations ADD COLUMN notified_at INTEGER;          -- when its end went to the project's outgoing webhook
CREATE INDEX evaluations_jobset ON evaluations (project_id, jobset, id);

-- Tokens gain a fourth permission, `trigger`, scoped to one project instead of a cache pattern.
CREATE TABLE tokens_new (
  id             TEXT    PRIMARY KEY,
  name           TEXT,
  token_hash     TEXT    NOT NULL UNIQUE,
  cache_pattern  TEXT    NOT NULL,                 -- '' for a trigger token
  permission     TEXT    NOT NULL CHECK (permission IN ('read', 'write', 'admin', 'trigger')),
  project        TEXT,                             -- the project a trigger token may trigger
  expires_at     INTEGER,
  revoked_at     INTEGER,
  created_at     INTEGER NOT NULL,
  last_used_at   INTEGER,
  CHECK ((permission = 'trigger') = (project IS NOT NULL))
);
INSERT INTO tokens_new (id, name, token_hash, cache_pattern, permission, project, expires_at, revoked_at, created_at, last_used_at)
  SELECT id, name, token_hash, cache_pattern, permission, NULL, expires_at, revoked_at, created_at, last_used_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;

-- A pull request from a fork whose author the project's policy does not trust: it waits here
-- until an admin approves it (then it is evaluated) or it is closed.
CREATE TABLE fork_approvals (
  project_id   INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  pr_number    INTEGER NOT NULL,
  head_sha     TEXT    NOT NULL,
  head_repo    TEXT    NOT NULL,
  author       TEXT    NOT NULL,
  title        TEXT    NOT NULL DEFAULT '',
  status       TEXT    NOT NULL CHECK (status IN ('waiting', 'approved')),
  approved_by  TEXT,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  PRIMARY KEY (project_id, pr_number)
) WITHOUT ROWID;

-- The head last seen per polled branch.
CREATE TABLE poll_heads (
  project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  ref         TEXT    NOT NULL,
  sha         TEXT    NOT NULL,
  seen_at     INTEGER NOT NULL,
  PRIMARY KEY (project_id, ref)
) WITHOUT ROWID;

-- One row per check run (or commit status) an evaluation shows on its commit: `name` is the
-- attribute, or '' for the evaluation itself. `version` grows with every change of the wanted
-- state; `sent_version` is the version the forge last accepted. Only the newest wanted state is
-- ever sent, one request per row at a time, so a late answer never overwrites a newer state.
CREATE TABLE forge_reports (
  eval_id        INTEGER NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
  name           TEXT    NOT NULL,
  repo           TEXT    NOT NULL,
  sha            TEXT    NOT NULL,
  state          TEXT    NOT NULL,                 -- queued | in_progress | completed
  conclusion     TEXT,                             -- success | failure | cancelled | neutral | action_required | timed_out
  title          TEXT    NOT NULL,
  summary        TEXT    NOT NULL,
  text           TEXT,
  details_url    TEXT,
  version        INTEGER NOT NULL DEFAULT 1,
  sent_version   INTEGER NOT NULL DEFAULT 0,
  remote_id      INTEGER,                          -- the check run's id once created
  tries          INTEGER NOT NULL DEFAULT 0,
  next_try_at    INTEGER NOT NULL DEFAULT 0,
  last_error     TEXT,
  updated_at     INTEGER NOT NULL,
  PRIMARY KEY (eval_id, name)
) WITHOUT ROWID;
CREATE INDEX forge_reports_due ON forge_reports (next_try_at) WHERE version > sent_version;

-- Browser sessions of the web UI: the cookie holds a random secret, the database its SHA-256.
CREATE TABLE ui_sessions (
  secret_hash  TEXT    PRIMARY KEY,
  token_id     TEXT    NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- Outgoing notifications waiting to be delivered (retried with backoff, dropped after a day).
CREATE TABLE notifications (
  id           INTEGER PRIMARY KEY,
  project_id   INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  event        TEXT    NOT NULL,
  body         TEXT    NOT NULL,
  tries        INTEGER NOT NULL DEFAULT 0,
  next_try_at  INTEGER NOT NULL,
  created_at   INTEGER NOT NULL
);
CREATE INDEX notifications_due ON notifications (next_try_at);

-- Attribute states as last notified, to notify only on a change from passing to failing and back.
CREATE TABLE attr_states (
  project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  jobset      TEXT    NOT NULL,
  attr        TEXT    NOT NULL,
  passing     INTEGER NOT NULL CHECK (passing IN (0, 1)),
  eval_id     INTEGER NOT NULL,
  PRIMARY KEY (project_id, jobset, attr)
) WITHOUT ROWID;

-- Evaluations before this one belong to the jobset of their ref.
UPDATE evaluations SET jobset = coalesce(ref, 'default');
