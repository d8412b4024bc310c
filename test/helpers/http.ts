// Plain HTTP checks against a running narhub, with Node's global fetch.
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { hashPart } from './nix.js';

export function basicAuth(token: string, user = 'x'): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:${token}`).toString('base64')}` };
}

export function bearerAuth(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export interface Narinfo {
  /** The raw text as served. */
  text: string;
  /** Every `Key: value` line, in order. */
  fields: [string, string][];
  /** The first value of a key. */
  get(key: string): string | undefined;
  /** All values of a key (e.g. Sig). */
  all(key: string): string[];
}

export function parseNarinfo(text: string): Narinfo {
  const fields: [string, string][] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const i = line.indexOf(': ');
    if (i < 0) throw new Error(`malformed narinfo line ${JSON.stringify(line)} in:\n${text}`);
    fields.push([line.slice(0, i), line.slice(i + 2)]);
  }
  return {
    text,
    fields,
    get: (key) => fields.find(([k]) => k === key)?.[1],
    all: (key) => fields.filter(([k]) => k === key).map(([, v]) => v),
  };
}

export interface FetchedNarinfo {
  status: number;
  headers: Headers;
  body: string;
  narinfo?: Narinfo;
}

/** GET `<cacheUrl>/<hash>.narinfo` for a store path; parses the body when the status is 200. */
export async function getNarinfo(
  cacheUrl: string,
  storePath: string,
  headers: Record<string, string> = {},
): Promise<FetchedNarinfo> {
  const res = await fetch(`${cacheUrl}/${hashPart(storePath)}.narinfo`, { headers });
  const body = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body,
    ...(res.status === 200 ? { narinfo: parseNarinfo(body) } : {}),
  };
}

/**
 * Verifies a narinfo's `Sig:` for `publicKey` (`name:base64`) over the Nix fingerprint
 * `1;<StorePath>;<NarHash>;<NarSize>;<comma-separated reference paths>`, with Node's Ed25519.
 * Returns false when there is no signature by that key name or it does not verify.
 */
export function verifyNarinfoSig(narinfo: Narinfo, publicKey: string): boolean {
  const sep = publicKey.indexOf(':');
  const keyName = publicKey.slice(0, sep);
  const raw = Buffer.from(publicKey.slice(sep + 1), 'base64');
  if (raw.length !== 32) throw new Error(`bad public key ${publicKey}`);
  const storePath = narinfo.get('StorePath') ?? '';
  const storeDir = storePath.slice(0, storePath.lastIndexOf('/'));
  const refs = (narinfo.get('References') ?? '')
    .split(' ')
    .filter((r) => r !== '')
    .map((r) => `${storeDir}/${r}`);
  const fingerprint = `1;${storePath};${narinfo.get('NarHash')};${narinfo.get('NarSize')};${refs.join(',')}`;
  const key = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]),
    format: 'der',
    type: 'spki',
  });
  return narinfo
    .all('Sig')
    .filter((s) => s.startsWith(`${keyName}:`))
    .some((s) => cryptoVerify(null, Buffer.from(fingerprint), key, Buffer.from(s.slice(keyName.length + 1), 'base64')));
}
