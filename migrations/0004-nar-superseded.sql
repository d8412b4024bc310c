-- 0004: NAR files replaced by a recompressed copy.
-- superseded_at: when background recompression moved every path off this (valid) file. The file
-- stays valid and served, for clients that cached the old narinfo (Nix keeps narinfos for up to
-- 30 days), and is swept once `supersededGracePeriod` has passed and no path points at it again.
ALTER TABLE nars ADD COLUMN superseded_at INTEGER;
CREATE INDEX nars_superseded ON nars (superseded_at) WHERE superseded_at IS NOT NULL;
