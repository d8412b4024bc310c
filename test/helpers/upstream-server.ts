// A binary cache served over HTTP from a directory (what `nix copy --to file://DIR` writes), standing
// in for cache.nixos.org, with faults a test can switch on: a NAR that breaks off, bytes that do
// not match, no answer at all, a slow transfer. It records every request it gets.
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join, normalize } from 'node:path';
import { Transform } from 'node:stream';
import { formatNarInfo } from '../../src/nix/narinfo.js';
import { formatPublicKey, generateKeyPair, signNarInfo, type SecretKey } from '../../src/nix/signing.js';
import type { TestPath } from './build-app.js';
import { makeTempDir, type Cleanup } from './tmp.js';

export type Fault =
  /** NAR GETs send this many bytes, then the connection is cut. */
  | { kind: 'break-nar'; afterBytes: number }
  /** NAR GETs send the file with one byte changed (same length). */
  | { kind: 'corrupt-nar' }
  /** Every request is accepted and never answered. */
  | { kind: 'hang' }
  /** Every answer waits this long first. */
  | { kind: 'delay'; ms: number }
  /** NAR bodies are sent at about this many bytes per second. */
  | { kind: 'throttle-nar'; bytesPerSecond: number }
  /** NAR bodies are sent one byte every `everyMs`: never silent for long, never done. */
  | { kind: 'trickle-nar'; everyMs: number }
  /** Requests for NARs (`nar`) or narinfos (`narinfo`) are answered with this status and a short body. */
  | { kind: 'status'; status: number; for: 'nar' | 'narinfo' }
  /** NAR GETs send the file and then these many more bytes, chunked (no Content-Length to hold them back). */
  | { kind: 'extra-nar'; bytes: number }
  /** NAR GETs send the file with a Content-Length this many bytes more than its size, and cut after the file. */
  | { kind: 'lying-length'; extra: number };

export interface UpstreamServer {
  url: string;
  /** `METHOD /path` of every request received, in order. */
  requests: string[];
  /** `METHOD /path` of every answer whose last byte went out, in order. */
  finished: string[];
  /** How many requests asked for exactly this path (`/nar/…`, `/<hash>.narinfo`). */
  count(path: string): number;
  /** The fault in force, or undefined for a well-behaved server. */
  fault: Fault | undefined;
  /** Stops listening and cuts every connection (an upstream that went down). */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
}

/** Serves `dir` as a binary cache on a loopback port until the test ends. */
export async function serveCacheDirectory(t: Cleanup, dir: string): Promise<UpstreamServer> {
  const requests: string[] = [];
  const finished: string[] = [];
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const self: UpstreamServer = {
    url: '',
    requests,
    finished,
    count: (path) => requests.filter((r) => r.slice(r.indexOf(' ') + 1) === path).length,
    fault: undefined,
    stop: async () => {
      const s = server;
      server = undefined;
      if (s === undefined) return;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    start: async () => {
      const s = createServer((req, res) => handle(req, res));
      s.on('connection', (socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve));
      port = (s.address() as { port: number }).port;
      self.url = `http://127.0.0.1:${port}`;
      server = s;
    },
  };

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]!);
    requests.push(`${req.method} ${path}`);
    res.on('finish', () => finished.push(`${req.method} ${path}`));
    const fault = self.fault;
    if (fault?.kind === 'hang') return;
    const answer = () => serve(req, res, path, fault);
    if (fault?.kind === 'delay') setTimeout(answer, fault.ms);
    else answer();
  }

  function serve(req: IncomingMessage, res: ServerResponse, path: string, fault: Fault | undefined): void {
    const isNar = path.startsWith('/nar/');
    if (fault?.kind === 'status' && (fault.for === 'nar') === isNar) {
      res.writeHead(fault.status, { 'content-type': 'text/plain' }).end(`injected ${fault.status}\n`);
      return;
    }
    const file = normalize(join(dir, path));
    let size: number;
    try {
      const st = statSync(file);
      if (!file.startsWith(dir) || !st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const type = path.endsWith('.narinfo') ? 'text/x-nix-narinfo' : 'application/octet-stream';
    if (isNar && fault?.kind === 'extra-nar') {
      res.writeHead(200, { 'content-type': type });
      const extra = Buffer.alloc(fault.bytes, 0x61);
      createReadStream(file)
        .on('end', () => res.end(extra))
        .pipe(res, { end: false });
      return;
    }
    const length = isNar && fault?.kind === 'lying-length' ? size + fault.extra : size;
    res.writeHead(200, { 'content-type': type, 'content-length': String(length) });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const body = createReadStream(file, { highWaterMark: 64 * 1024 });
    if (isNar && fault?.kind === 'lying-length') {
      body.on('end', () => setTimeout(() => res.socket?.destroy(), 50));
      body.pipe(res, { end: false });
      return;
    }
    if (isNar && fault?.kind === 'break-nar') {
      let sent = 0;
      body.on('data', (data: string | Buffer) => {
        const chunk = data as Buffer;
        const room = fault.afterBytes - sent;
        if (room > 0) res.write(chunk.subarray(0, room));
        sent += chunk.length;
        if (sent >= fault.afterBytes) {
          body.destroy();
          // Let the bytes out, then cut the connection without ending the response.
          setTimeout(() => res.socket?.destroy(), 50);
        }
      });
      return;
    }
    if (isNar && fault?.kind === 'corrupt-nar') {
      let offset = 0;
      const middle = Math.floor(size / 2);
      body
        .pipe(
          new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              if (middle >= offset && middle < offset + chunk.length) {
                const copy = Buffer.from(chunk);
                copy[middle - offset] = copy[middle - offset]! ^ 0xff;
                chunk = copy;
              }
              offset += chunk.length;
              callback(null, chunk);
            },
          }),
        )
        .pipe(res);
      return;
    }
    if (isNar && fault?.kind === 'trickle-nar') {
      body.destroy();
      const bytes = readFileSync(file);
      let sent = 0;
      const timer = setInterval(() => {
        if (sent < bytes.length) res.write(bytes.subarray(sent, ++sent));
        else res.end();
      }, fault.everyMs);
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (isNar && fault?.kind === 'throttle-nar') {
      body.on('data', (data: string | Buffer) => {
        const chunk = data as Buffer;
        body.pause();
        res.write(chunk);
        setTimeout(() => body.resume(), Math.ceil((chunk.length / fault.bytesPerSecond) * 1000));
      });
      body.on('end', () => res.end());
      return;
    }
    body.pipe(res);
  }

  await self.start();
  t.after(() => self.stop());
  return self;
}

export interface SignedCacheDir {
  dir: string;
  key: SecretKey;
  publicKey: string;
}

/**
 * A binary-cache directory as Nix writes one (`nix-cache-info`, `<hash>.narinfo`, `nar/<file>`)
 * holding `paths`, every narinfo signed with a fresh key `name`.
 */
export async function writeCacheDirectory(t: Cleanup, paths: TestPath[], name = 'upstream-1'): Promise<SignedCacheDir> {
  const dir = await makeTempDir(t, 'narhub-upstream-');
  const { secret, public: pub } = generateKeyPair(name);
  await mkdir(join(dir, 'nar'));
  await writeFile(join(dir, 'nix-cache-info'), 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n');
  for (const p of paths) await addToCacheDirectory(dir, secret, p);
  return { dir, key: secret, publicKey: formatPublicKey(pub) };
}

/** Adds one path (its NAR file and its signed narinfo) to a cache directory. */
export async function addToCacheDirectory(dir: string, key: SecretKey, path: TestPath): Promise<void> {
  await writeFile(join(dir, 'nar', path.fileName), path.file);
  const info = path.info();
  await writeFile(join(dir, `${path.hashPart}.narinfo`), formatNarInfo({ ...info, sigs: [signNarInfo(key, info)] }));
}
