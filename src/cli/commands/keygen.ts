import { writeFileSync } from 'node:fs';
import { formatPublicKey, formatSecretKey, generateKeyPair } from '../../nix/signing.js';
import { parseCommand } from '../command-spec.js';
import { KEYGEN } from '../specs/keygen.js';
import { UsageError } from '../usage-error.js';

/**
 * `narhub keygen`: a signing key pair in Nix's own file formats (what
 * nix-store --generate-binary-cache-key writes).
 */
export function keygenCommand(argv: string[], out: NodeJS.WritableStream): void {
  const { values, positionals } = parseCommand(KEYGEN, argv);
  const secretFile = values['secret-key-file'];
  const publicFile = values['public-key-file'];
  if (!secretFile) throw new UsageError('--secret-key-file must not be empty');
  if (!publicFile) throw new UsageError('--public-key-file must not be empty');
  const name = positionals[0]!;
  if (name.includes(':') || name.trim() !== name || name === '')
    throw new UsageError('key NAME must be non-empty, without ":" or surrounding spaces');
  const pair = generateKeyPair(name);
  writeFileSync(secretFile, formatSecretKey(pair.secret), { mode: 0o600, flag: 'wx' });
  writeFileSync(publicFile, formatPublicKey(pair.public), { flag: 'wx' });
  out.write(`${formatPublicKey(pair.public)}\n`);
}
