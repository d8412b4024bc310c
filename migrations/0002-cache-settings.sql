-- 0002: per-cache serving and storage settings.
-- redirect_nars: answer NAR GETs with a presigned storage URL (object stores only).
-- recompress_to_zstd: recompress xz/bzip2 NARs uploaded by stock Nix to zstd in the background.
ALTER TABLE caches ADD COLUMN redirect_nars INTEGER NOT NULL DEFAULT 0 CHECK (redirect_nars IN (0, 1));
ALTER TABLE caches ADD COLUMN redirect_expiry INTEGER NOT NULL DEFAULT 300;
ALTER TABLE caches ADD COLUMN recompress_to_zstd INTEGER NOT NULL DEFAULT 0 CHECK (recompress_to_zstd IN (0, 1));
