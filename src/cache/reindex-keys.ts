import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parsePublicKey, type PublicKey } from '../nix/signing.js';
import type { CacheRow, CachesRepo } from '../db/caches-repo.js';
import { nextGeneration } from './caches.js';
import { generateKeyFile, keyFileOf, keyFilePattern, keyName } from './key-files.js';

export interface RestoredKeys {
  keys: PublicKey[];
  /** False when a key had to be generated: the cache's old signatures cannot be checked. */
  trusted: boolean;
  generated: string | undefined;
}

/**
 * Restores a cache's key rows from its key files (`<keysDir>/<cache>-N.secret`) and its
 * declared `signingKeyFile`; generates a key only when the cache would otherwise have none.
 */
export function restoreKeys(
  caches: CachesRepo,
  cache: CacheRow,
  keysDir: string,
  declaredFile: string | undefined,
  warn: (message: string) => void,
): RestoredKeys {
  const known = new Set(caches.keys(cache.id).map((k) => k.name));
  const found = generatedKeyFiles(keysDir, cache.name);
  for (const { file, generation } of found) {
    const name = keyName(cache.name, generation);
    if (known.has(name)) continue;
    try {
      const key = keyFileOf(file);
      if (key.name !== name) {
        warn(`${cache.name}: key file ${file} holds key ${key.name}, not ${name}; skipped`);
        continue;
      }
      caches.insertKey(cache.id, key.name, key.publicKey, file, generation);
      known.add(name);
    } catch (err) {
      warn(`${cache.name}: cannot restore key file ${file}: ${messageOf(err)}`);
    }
  }
  if (declaredFile !== undefined && !caches.keys(cache.id).some((k) => k.secretKeyFile === declaredFile)) {
    try {
      const key = keyFileOf(declaredFile);
      if (!known.has(key.name))
        caches.insertKey(cache.id, key.name, key.publicKey, declaredFile, nextGeneration(caches, cache));
    } catch (err) {
      warn(`${cache.name}: cannot use its declared signing key file ${declaredFile}: ${messageOf(err)}`);
    }
  }
  let generated: string | undefined;
  if (caches.keys(cache.id).length === 0) {
    // Without a key the cache could not sign new paths; its old paths keep their signatures.
    const generation = found.reduce((g, k) => Math.max(g, k.generation), 0) + 1;
    const key = generateKeyFile(keysDir, cache.name, generation);
    caches.insertKey(cache.id, key.name, key.publicKey, key.file, generation);
    generated = key.name;
    warn(
      `${cache.name}: no signing key to restore; generated ${generated} ` +
        `(clients must trust ${key.publicKey} for paths signed from now on)`,
    );
  }
  const keys = caches.keys(cache.id).map((k) => parsePublicKey(k.publicKey));
  return { keys, trusted: generated === undefined, generated };
}

/** The `<cache>-N.secret` files in `keysDir`, oldest generation first. */
function generatedKeyFiles(keysDir: string, cache: string): { file: string; generation: number }[] {
  let entries: string[] = [];
  try {
    entries = readdirSync(keysDir);
  } catch {
    // No keys directory: nothing to restore.
  }
  const pattern = keyFilePattern(cache);
  return entries
    .map((file) => ({ file, m: pattern.exec(file) }))
    .filter((e): e is { file: string; m: RegExpExecArray } => e.m !== null)
    .map((e) => ({ file: join(keysDir, e.file), generation: Number(e.m[1]) }))
    .sort((a, b) => a.generation - b.generation);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
