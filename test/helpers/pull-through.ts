// Pull-through tests against real HTTP: narhub (in-process, listening on a loopback port) in front
// of a binary-cache directory served by a local HTTP server that can misbehave.
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UpstreamSettings } from '../../src/cache/upstream/pull-through.js';
import { buildTestApp, makePath, type TestApp, type TestPath } from './build-app.js';
import {
  serveCacheDirectory,
  writeCacheDirectory,
  type SignedCacheDir,
  type UpstreamServer,
} from './upstream-server.js';

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The whole message arrived (Content-Length bytes, or the last chunk). */
  complete: boolean;
  /** When the first body byte arrived (performance.now()), if any did. */
  firstByteAt: number | undefined;
}

export function get(url: string, onFirstByte?: () => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let firstByteAt: number | undefined;
      res.on('data', (chunk: Buffer) => {
        if (firstByteAt === undefined) {
          firstByteAt = performance.now();
          onFirstByte?.();
        }
        chunks.push(chunk);
      });
      res.on('error', () => undefined);
      res.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          complete: res.complete,
          firstByteAt,
        }),
      );
    });
    request.on('error', reject);
  });
}

/** leaf <- mid <- top, zstd-compressed, in a signed cache directory served over HTTP. */
export async function closureUpstream(
  t: Parameters<typeof buildTestApp>[0],
  opts: { topBytes?: number } = {},
): Promise<{ leaf: TestPath; mid: TestPath; top: TestPath; cacheDir: SignedCacheDir; upstream: UpstreamServer }> {
  const leaf = makePath({ name: 'leaf', compression: 'zstd' });
  const mid = makePath({ name: 'mid', compression: 'zstd', references: [leaf.basename] });
  const top = makePath({
    name: 'top',
    compression: 'zstd',
    references: [mid.basename],
    ...(opts.topBytes === undefined
      ? {}
      : { tree: { type: 'regular' as const, contents: randomBytes(opts.topBytes) } }),
  });
  const cacheDir = await writeCacheDirectory(t, [leaf, mid, top]);
  const upstream = await serveCacheDirectory(t, cacheDir.dir);
  return { leaf, mid, top, cacheDir, upstream };
}

export const FAST: Partial<UpstreamSettings> = { narinfoTimeoutMs: 1_000, negativeTtlMs: 60_000, narTimeoutMs: 2_000 };

export async function narhubInFront(
  t: Parameters<typeof buildTestApp>[0],
  upstreams: { url: string; publicKey: string; priority?: number }[],
  settings: Partial<UpstreamSettings> = FAST,
): Promise<TestApp & { url: string }> {
  const h = await buildTestApp(t, { upstream: settings });
  for (const u of upstreams)
    h.service.upstreams.add(h.main, { url: u.url, publicKeys: [u.publicKey], priority: u.priority });
  const url = await h.app.listen({ host: '127.0.0.1', port: 0 });
  return { ...h, url };
}

export async function committed(h: TestApp, path: TestPath, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (h.service.narinfo(h.main, path.hashPart) === undefined) {
    if (Date.now() > until) throw new Error(`${path.basename} was not committed within ${timeoutMs} ms`);
    await sleep(20);
  }
}

export function storedNarFiles(h: TestApp): string[] {
  const dir = join(h.storeRoot, 'main', 'nar');
  return existsSync(dir) ? readdirSync(dir) : [];
}
