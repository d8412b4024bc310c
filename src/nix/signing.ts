import {
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { NarhubError } from '../errors.js';
import { decodeBase64Strict, encodeBase64 } from './base64.js';
import { narInfoFingerprint } from './fingerprint.js';
import type { NarInfo } from './narinfo.js';
import { quote } from './quote.js';
import { DEFAULT_STORE_DIR } from './store-path.js';

/**
 * A Nix signing key (docs/protocol.md, Signatures and keys): libsodium's 64-byte Ed25519 secret
 * key, seed then public key.
 */
export interface SecretKey {
  name: string;
  secretKey: Uint8Array;
}

export interface PublicKey {
  name: string;
  publicKey: Uint8Array;
}

const SEED_BYTES = 32;
const SECRET_KEY_BYTES = 64;
const PUBLIC_KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;

function keyNameProblem(name: string): string | undefined {
  if (name === '') return 'key name is empty';
  // The name ends at the first ':'; whitespace would not survive key files and Sig lines.
  if (/[:\s\x00-\x1f\x7f]/.test(name)) return `key name ${quote(name)} contains ":", whitespace or control characters`;
  return undefined;
}

/** Splits `name:base64` into a name and exactly `length` bytes, or throws KEY_INVALID. */
function parseKeyText(text: string, kind: 'secret' | 'public', length: number): { name: string; bytes: Uint8Array } {
  // Nix writes key files without a newline, but editors often add one.
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  const colon = body.indexOf(':');
  if (colon < 0) throw new NarhubError('KEY_INVALID', `${kind} key is not "<name>:<base64>"`);
  const name = body.slice(0, colon);
  const nameProblem = keyNameProblem(name);
  if (nameProblem !== undefined) throw new NarhubError('KEY_INVALID', `${kind} key: ${nameProblem}`);
  const bytes = decodeBase64Strict(body.slice(colon + 1));
  if (bytes === undefined) throw new NarhubError('KEY_INVALID', `${kind} key ${quote(name)}: not valid base64`);
  if (bytes.length !== length) {
    throw new NarhubError(
      'KEY_INVALID',
      `${kind} key ${quote(name)}: decodes to ${bytes.length} bytes, expected ${length}`,
    );
  }
  return { name, bytes };
}

/** DER of a PKCS #8 Ed25519 private key up to its 32-byte seed (RFC 8410). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * The Ed25519 public key of a 32-byte seed, as libsodium derives it, by OpenSSL: tweetnacl's
 * pure-JavaScript derivation takes 15–20 ms on the event loop, and the server derives one
 * whenever it first signs for a cache or creates one.
 */
function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const x = createPublicKey(key).export({ format: 'jwk' }).x;
  if (x === undefined) throw new NarhubError('INTERNAL', 'Ed25519 public key export gave no key');
  return new Uint8Array(Buffer.from(x, 'base64url'));
}

export function parseSecretKey(text: string): SecretKey {
  const { name, bytes } = parseKeyText(text, 'secret', SECRET_KEY_BYTES);
  // libsodium signs with the stored public half; if it does not match the seed, every signature is bad.
  const derived = publicKeyFromSeed(bytes.subarray(0, SEED_BYTES));
  if (!Buffer.from(derived).equals(Buffer.from(bytes.subarray(SEED_BYTES)))) {
    throw new NarhubError('KEY_INVALID', `secret key ${quote(name)}: public half does not match the seed`);
  }
  return { name, secretKey: bytes };
}

export function parsePublicKey(text: string): PublicKey {
  const { name, bytes } = parseKeyText(text, 'public', PUBLIC_KEY_BYTES);
  return { name, publicKey: bytes };
}

export function formatSecretKey(key: SecretKey): string {
  return `${key.name}:${encodeBase64(key.secretKey)}`;
}

export function formatPublicKey(key: PublicKey): string {
  return `${key.name}:${encodeBase64(key.publicKey)}`;
}

export function generateKeyPair(name: string): { secret: SecretKey; public: PublicKey } {
  const problem = keyNameProblem(name);
  if (problem !== undefined) throw new NarhubError('KEY_INVALID', problem);
  const seed = randomBytes(SEED_BYTES);
  const publicKey = publicKeyFromSeed(seed);
  const secretKey = new Uint8Array(SECRET_KEY_BYTES);
  secretKey.set(seed);
  secretKey.set(publicKey, SEED_BYTES);
  return {
    secret: { name, secretKey },
    public: { name, publicKey },
  };
}

export function publicKeyOf(secret: SecretKey): PublicKey {
  if (secret.secretKey.length !== SECRET_KEY_BYTES) {
    throw new NarhubError('KEY_INVALID', `secret key ${quote(secret.name)} is not ${SECRET_KEY_BYTES} bytes`);
  }
  // Derived from the seed rather than copied, so a corrupted public half cannot be trusted by mistake.
  const publicKey = publicKeyFromSeed(secret.secretKey.subarray(0, SEED_BYTES));
  return { name: secret.name, publicKey };
}

/**
 * Key formats are libsodium's (as Nix stores keys); derivation, signing and verifying go
 * through Node's crypto (OpenSSL), which gives the same bytes as libsodium and tweetnacl
 * (Ed25519 is deterministic; `signing.test.ts` checks against tweetnacl both ways) at a tiny
 * fraction of the cost: pure-JavaScript Ed25519 takes ~5 ms to sign and ~15 ms to verify on
 * this hardware, on the event loop, for every upload and every narinfo a spoke checks.
 */
const privateKeys = new WeakMap<Uint8Array, KeyObject>();
const publicKeys = new WeakMap<Uint8Array, KeyObject | null>();
const base64url = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');

function privateKeyObject(secretKey: Uint8Array): KeyObject {
  let key = privateKeys.get(secretKey);
  if (!key) {
    const jwk = {
      kty: 'OKP',
      crv: 'Ed25519',
      d: base64url(secretKey.subarray(0, SEED_BYTES)),
      x: base64url(secretKey.subarray(SEED_BYTES)),
    };
    key = createPrivateKey({ key: jwk, format: 'jwk' });
    privateKeys.set(secretKey, key);
  }
  return key;
}

/** The key as OpenSSL takes it, or null for 32 bytes that are not a valid point. */
function publicKeyObject(publicKey: Uint8Array): KeyObject | null {
  let key = publicKeys.get(publicKey);
  if (key === undefined) {
    try {
      key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: base64url(publicKey) }, format: 'jwk' });
    } catch {
      key = null;
    }
    publicKeys.set(publicKey, key);
  }
  return key;
}

/** Ed25519-signs `message` (UTF-8) and returns it as a Nix `Sig` value, `<name>:<base64>`. */
export function signDetached(secret: SecretKey, message: string): string {
  if (secret.secretKey.length !== SECRET_KEY_BYTES) {
    throw new NarhubError('KEY_INVALID', `secret key ${quote(secret.name)} is not ${SECRET_KEY_BYTES} bytes`);
  }
  const sig = cryptoSign(null, Buffer.from(message, 'utf8'), privateKeyObject(secret.secretKey));
  return `${secret.name}:${encodeBase64(sig)}`;
}

/**
 * Whether `sig` (`<name>:<base64>`) is a valid signature of `message` by a key of that name.
 * Unknown names and malformed signatures are simply not valid: like Nix, a narinfo may carry
 * signatures from keys we do not know.
 */
export function verifyDetached(publicKeys: PublicKey[], message: string, sig: string): boolean {
  const colon = sig.indexOf(':');
  if (colon <= 0) return false;
  const name = sig.slice(0, colon);
  const bytes = decodeBase64Strict(sig.slice(colon + 1));
  if (bytes === undefined || bytes.length !== SIGNATURE_BYTES) return false;
  const data = Buffer.from(message, 'utf8');
  return publicKeys.some((k) => {
    if (k.name !== name || k.publicKey.length !== PUBLIC_KEY_BYTES) return false;
    const key = publicKeyObject(k.publicKey);
    return key !== null && cryptoVerify(null, data, key, bytes);
  });
}

/** Signs the narinfo's fingerprint (docs/protocol.md, Signatures and keys); the result is a `Sig` value. */
export function signNarInfo(secret: SecretKey, info: NarInfo, storeDir = DEFAULT_STORE_DIR): string {
  return signDetached(
    secret,
    narInfoFingerprint(info.storePath, info.narHash, info.narSize, info.references, storeDir),
  );
}

/** Whether `sig` signs this narinfo's fingerprint. A narinfo that has no fingerprint verifies nothing. */
export function verifyNarInfoSig(
  publicKeys: PublicKey[],
  info: NarInfo,
  sig: string,
  storeDir = DEFAULT_STORE_DIR,
): boolean {
  let fingerprint: string;
  try {
    fingerprint = narInfoFingerprint(info.storePath, info.narHash, info.narSize, info.references, storeDir);
  } catch (err) {
    if (err instanceof NarhubError) return false;
    throw err;
  }
  return verifyDetached(publicKeys, fingerprint, sig);
}
