import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NarhubError } from '../errors.js';
import {
  formatPublicKey,
  formatSecretKey,
  generateKeyPair,
  parseSecretKey,
  publicKeyOf,
  type SecretKey,
} from '../nix/signing.js';

/** A cache's signing key as the database records it: the secret stays in its file. */
export interface KeyFile {
  name: string;
  /** `name:base64`, as Nix's trusted-public-keys take it. */
  publicKey: string;
  file: string;
}

/** The name narhub gives a cache's generated keys, and their files: `<cache>-<generation>`. */
export const keyName = (cache: string, generation: number): string => `${cache}-${generation}`;

/** `<keysDir>/<cache>-<generation>.secret`, as `generateKeyFile` writes it. */
export function keyFilePattern(cache: string): RegExp {
  return new RegExp(`^${cache.replace(/[-]/g, '\\-')}-([1-9][0-9]{0,8})\\.secret$`);
}

/**
 * Generates the key `<cache>-<generation>` and writes its secret to
 * `<keysDir>/<cache>-<generation>.secret` with mode 0600, never over an existing file.
 */
export function generateKeyFile(keysDir: string, cache: string, generation: number): KeyFile {
  const pair = generateKeyPair(keyName(cache, generation));
  mkdirSync(keysDir, { recursive: true, mode: 0o700 });
  const file = join(keysDir, `${pair.secret.name}.secret`);
  writeFileSync(file, formatSecretKey(pair.secret), { mode: 0o600, flag: 'wx' });
  // The mode given to open is masked by the umask; this one is not.
  chmodSync(file, 0o600);
  return { name: pair.secret.name, publicKey: formatPublicKey(pair.public), file };
}

/** Reads a Nix secret key file (`name:base64`); KEY_INVALID names the file, never its contents. */
export function readSecretKeyFile(file: string): SecretKey {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new NarhubError(
      'KEY_INVALID',
      `cannot read signing key file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  return parseSecretKey(text);
}

/** A secret key file someone else made (a cache's declared `signingKeyFile`), as a KeyFile. */
export function keyFileOf(file: string): KeyFile {
  const secret = readSecretKeyFile(file);
  return { name: secret.name, publicKey: formatPublicKey(publicKeyOf(secret)), file };
}
