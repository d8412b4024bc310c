// Uploads over real HTTP, the two ways a client uploads to narhub: as Nix does (NAR PUT, then
// narinfo PUT) and natively (one PUT of a metadata line and the NAR, as `narhub push` does).
import { randomBytes } from 'node:crypto';
import { basicAuth, bearerAuth } from './http.js';
import { makePath, type TestPath } from './build-app.js';

/** A path whose NAR holds one file of `size` random bytes, compressed as given. */
export function randomPath(
  name: string,
  size: number,
  references: string[] = [],
  compression: 'none' | 'zstd' = 'none',
): TestPath {
  return makePath({ name, references, compression, tree: { type: 'regular', contents: randomBytes(size) } });
}

/** As `nix copy --to` does it: PUT the NAR file, then the narinfo. Throws on any refusal or failure. */
export async function nixProtocolUpload(cacheUrl: string, token: string, p: TestPath, signal?: AbortSignal) {
  const auth = basicAuth(token);
  const nar = await fetch(`${cacheUrl}/${p.narUrl}`, {
    method: 'PUT',
    // A Buffer is a BodyInit; the DOM lib (preact's JSX types) wants an ArrayBuffer view.
    body: p.file as Uint8Array<ArrayBuffer>,
    headers: { ...auth, 'content-type': 'application/x-nix-nar' },
    signal,
  });
  if (nar.status >= 300) throw new Error(`NAR PUT ${nar.status}: ${await nar.text()}`);
  const info = await fetch(`${cacheUrl}/${p.hashPart}.narinfo`, {
    method: 'PUT',
    body: p.narinfo(),
    headers: { ...auth, 'content-type': 'text/x-nix-narinfo' },
    signal,
  });
  if (info.status >= 300) throw new Error(`narinfo PUT ${info.status}: ${await info.text()}`);
}

/** As `narhub push` does it: one PUT of the metadata line and the raw NAR. */
export async function nativeUpload(baseUrl: string, cache: string, token: string, p: TestPath, signal?: AbortSignal) {
  const meta = {
    storePath: p.storePath,
    narHash: p.info().narHash,
    narSize: p.nar.length,
    references: p.references.map((r) => `/nix/store/${r}`),
  };
  const res = await fetch(`${baseUrl}/api/v1/caches/${cache}/paths/${p.hashPart}`, {
    method: 'PUT',
    body: Buffer.concat([Buffer.from(`${JSON.stringify(meta)}\n`), p.nar]),
    headers: { ...bearerAuth(token), 'content-type': 'application/octet-stream' },
    signal,
  });
  if (res.status >= 300) throw new Error(`native PUT ${res.status}: ${await res.text()}`);
}
