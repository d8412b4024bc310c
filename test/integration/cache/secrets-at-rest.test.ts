// What narhub keeps on disk holds no secret in the clear: tokens only as SHA-256 hashes, signing
// keys only in their own 0600 files, never in the database.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildTestApp } from '../../helpers/build-app.js';

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const full = join(dir, e);
    return statSync(full).isDirectory() ? filesUnder(full) : [full];
  });
}

test('tokens are kept only as SHA-256 hashes, and secret keys only in 0600 files outside the database', async (t) => {
  const h = await buildTestApp(t);
  const { token } = h.token('main', 'write');
  h.db.pragma('wal_checkpoint(TRUNCATE)');
  const secretKeys = filesUnder(join(h.dataDir, 'keys')).filter((f) => f.endsWith('.secret'));
  assert.ok(secretKeys.length > 0, 'the cache has a key file');
  const secrets = [token, ...Object.values(h.tokens), ...secretKeys.map((f) => readFileSync(f, 'utf8').trim())];
  const secretHalves = secretKeys.map((f) => readFileSync(f, 'utf8').trim().split(':')[1]!);
  for (const file of filesUnder(h.dataDir).filter((f) => !f.includes('/keys/'))) {
    const bytes = readFileSync(file);
    for (const s of [...secrets, ...secretHalves]) assert.ok(!bytes.includes(s), `${file} holds a secret in the clear`);
  }
  const db = readFileSync(join(h.dataDir, 'narhub.sqlite'));
  assert.ok(db.includes(createHash('sha256').update(token).digest('hex')), 'the database has the hash');
  for (const f of secretKeys) assert.equal(statSync(f).mode & 0o777, 0o600, `${f} is 0600`);
});
