// Checks what a running narhub shows, from outside, as any client would see it: every visible
// narinfo signed by the cache, its NAR present with the NarHash and NarSize it states, and every
// reference visible. Used after faults (kill -9, a full disk, a dying S3) to prove nothing
// corrupt or partial is ever served.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { decompress as zstdDecompress } from 'zstd-napi';
import { encodeNix32 } from '../../src/nix/nix32.js';
import { parseNarinfo, verifyNarinfoSig } from './http.js';

const sha256 = (b: Uint8Array) => `sha256:${encodeNix32(createHash('sha256').update(b).digest())}`;

function decode(compression: string, body: Buffer): Buffer {
  switch (compression) {
    case 'none':
      return body;
    case 'zstd':
      return Buffer.from(zstdDecompress(body));
    case 'gzip':
      return gunzipSync(body);
    case 'br':
      return brotliDecompressSync(body);
    default:
      throw new Error(`cache-check cannot decode ${compression}`);
  }
}

/**
 * Looks up each hash part; returns those visible. Fails the test on any visible path whose NAR,
 * hash, size, signature or references do not hold.
 */
export async function checkVisible(cacheUrl: string, publicKey: string, hashParts: string[]): Promise<Set<string>> {
  const visible = new Set<string>();
  const references = new Map<string, string[]>();
  for (const hashPart of hashParts) {
    const res = await fetch(`${cacheUrl}/${hashPart}.narinfo`);
    const body = await res.text();
    if (res.status === 404) continue;
    assert.equal(res.status, 200, `${hashPart}.narinfo: ${res.status} ${body}`);
    const info = parseNarinfo(body);
    assert.ok(verifyNarinfoSig(info, publicKey), `${hashPart}.narinfo is signed by the cache`);
    const nar = await fetch(`${cacheUrl}/${info.get('URL')}`);
    assert.equal(nar.status, 200, `the NAR of ${hashPart} is served`);
    const bytes = decode(info.get('Compression') ?? 'bzip2', Buffer.from(await nar.arrayBuffer()));
    assert.equal(sha256(bytes), info.get('NarHash'), `the NAR of ${hashPart} has its NarHash`);
    assert.equal(bytes.length, Number(info.get('NarSize')), `the NAR of ${hashPart} has its NarSize`);
    visible.add(hashPart);
    references.set(
      hashPart,
      (info.get('References') ?? '').split(' ').filter((r) => r !== ''),
    );
  }
  for (const [hashPart, refs] of references) {
    for (const ref of refs) {
      const res = await fetch(`${cacheUrl}/${ref.slice(0, 32)}.narinfo`);
      assert.equal(res.status, 200, `${hashPart}'s reference ${ref} is visible`);
      await res.arrayBuffer();
    }
  }
  return visible;
}
