// Common e2e setup: a fresh server, a write token, a freshly built closure uploaded with `nix copy`.
import { buildClosure, createNixEnv, type Closure, type NixEnv } from './nix.js';
import { createToken, startServer, type RunningServer } from './server.js';
import type { Cleanup } from './tmp.js';

export type Compression = 'none' | 'zstd' | 'xz';

export interface Uploaded {
  server: RunningServer;
  /** `<server>/<cache>`, the substituter URL. */
  cacheUrl: string;
  writeToken: string;
  /** The Nix env that built and uploaded the closure (its netrc holds the write token). */
  uploader: NixEnv;
  closure: Closure;
}

/** Starts a server (unless given), builds a closure and `nix copy --to`s it into `cache` (default `main`). */
export async function uploadClosure(
  t: Cleanup,
  label: string,
  opts: { server?: RunningServer; cache?: string; compression?: Compression } = {},
): Promise<Uploaded> {
  const server = opts.server ?? (await startServer(t));
  const cache = opts.cache ?? 'main';
  const cacheUrl = `${server.url}/${cache}`;
  const { token: writeToken } = await createToken(server.dataDir, cache, 'write');
  const uploader = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: writeToken }] });
  const closure = await buildClosure(uploader, label);
  await uploader.run('nix', ['copy', '--to', `${cacheUrl}?compression=${opts.compression ?? 'zstd'}`, closure.top]);
  return { server, cacheUrl, writeToken, uploader, closure };
}

/** Non-empty lines of a command's output, sorted. */
export function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .sort();
}

/** `text` as a regular expression source that matches it literally (store paths hold dots and pluses). */
export function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
