-- 0006: pull-through upstreams (issue 13).
-- upstreams: the caches a cache asks on a narinfo miss, in priority order (lower first, as Nix's
-- own Priority). public_keys: the keys it is trusted under, space-separated `name:base64` as in
-- nix.conf's trusted-public-keys. declared: set by the config file, which replaces its own rows
-- at every start; rows added with `narhub upstream add` or the API (declared = 0) stay.
CREATE TABLE upstreams (
  id           INTEGER PRIMARY KEY,
  cache_id     INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  url          TEXT    NOT NULL,
  public_keys  TEXT    NOT NULL,
  priority     INTEGER NOT NULL,
  declared     INTEGER NOT NULL DEFAULT 0 CHECK (declared IN (0, 1)),
  created_at   INTEGER NOT NULL,
  UNIQUE (cache_id, url)
);

-- A narinfo an upstream answered with and narhub offered (under its own URL and signature) but
-- has not committed yet: what a later GET of its NAR is fetched from. Deleted once the path is
-- committed, with its upstream, or after the offer TTL.
CREATE TABLE upstream_offers (
  cache_id     INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
  hash_part    TEXT    NOT NULL,
  upstream_id  INTEGER NOT NULL REFERENCES upstreams (id) ON DELETE CASCADE,
  file_name    TEXT    NOT NULL,              -- the NAR's name under nar/ here
  nar_url      TEXT    NOT NULL,              -- where the upstream serves it
  narinfo      TEXT    NOT NULL,              -- the upstream's narinfo, as received
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (cache_id, hash_part)
);
CREATE INDEX upstream_offers_file ON upstream_offers (cache_id, file_name);
CREATE INDEX upstream_offers_age ON upstream_offers (created_at);
