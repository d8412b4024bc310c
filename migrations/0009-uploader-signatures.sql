-- 0009: what a cache does with signatures under key names other than its own (issue 18).
-- uploader_keys: JSON array of Nix public keys (`name:base64`); signatures under their names must verify.
-- refuse_unknown_signatures: refuse signatures under any other name (else they are kept as sent).
-- max_uploader_signatures: how many signatures under other names one path may carry.
ALTER TABLE caches ADD COLUMN uploader_keys TEXT NOT NULL DEFAULT '[]';
ALTER TABLE caches ADD COLUMN refuse_unknown_signatures INTEGER NOT NULL DEFAULT 0
  CHECK (refuse_unknown_signatures IN (0, 1));
ALTER TABLE caches ADD COLUMN max_uploader_signatures INTEGER NOT NULL DEFAULT 8 CHECK (max_uploader_signatures >= 0);
