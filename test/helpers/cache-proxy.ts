// A reverse proxy in front of a real narhub for the push tests: it counts native uploads per
// path and keeps their bodies, answers chosen requests with an error instead (after reading
// their body, as a busy server would), and can hold uploads mid-body so a test can kill the
// client at that moment.
// It also keeps every request's method, URL and headers, to show what a client sent.
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Cleanup } from './tmp.js';

export interface Refusal {
  /** Which requests: a method and a part of the URL (`/api/v1/` for every API request). */
  method: string;
  urlIncludes: string;
  /** How many of them, from now on. */
  times: number;
  status: number;
  /** Sent as `{"code", "message"}`, as narhub's API answers. */
  code: string;
  message: string;
  headers?: Record<string, string>;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

export interface CacheProxy {
  url: string;
  /** Every request that reached the proxy so far, in order. */
  requests(): SeenRequest[];
  /** Native uploads (`PUT …/paths/<hashPart>`) that reached the proxy for this hash part. */
  uploads(hashPart: string): number;
  /** The body of the last native upload of this hash part that was forwarded whole. */
  uploadBody(hashPart: string): Buffer | undefined;
  /** Requests answered by a refusal so far. */
  refused(): number;
  refuse(refusal: Refusal): void;
  /**
   * From now on, native uploads are held once their first body bytes arrived, until `releaseUploads`;
   * resolves with the hash part of the first one held.
   */
  holdUploads(): Promise<string>;
  /** Forwards the uploads held so far, whole, and stops holding new ones. */
  releaseUploads(): void;
}

const NATIVE_UPLOAD = /^\/api\/v1\/caches\/[^/]+\/paths\/([^/?]+)/;

export async function startCacheProxy(t: Cleanup, target: string): Promise<CacheProxy> {
  const upstream = new URL(target);
  const uploads = new Map<string, number>();
  const seen: SeenRequest[] = [];
  const bodies = new Map<string, Buffer>();
  const refusals: Refusal[] = [];
  let refused = 0;
  let onHeld: ((hashPart: string) => void) | undefined;
  let holding = false;
  const held: { req: IncomingMessage; res: ServerResponse; head: Buffer }[] = [];

  /** Sends `req` on to the server (`head`: body bytes already read from it) and its answer back. */
  const forward = (req: IncomingMessage, res: ServerResponse, head?: Buffer) => {
    const out = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    const upload = req.method === 'PUT' ? NATIVE_UPLOAD.exec(req.url ?? '') : null;
    if (upload) {
      const parts = head ? [head] : [];
      req.on('data', (chunk: Buffer) => parts.push(chunk));
      req.on('end', () => bodies.set(upload[1]!, Buffer.concat(parts)));
    }
    if (head) out.write(head);
    req.pipe(out);
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const upload = req.method === 'PUT' ? NATIVE_UPLOAD.exec(req.url ?? '') : null;
    if (upload) uploads.set(upload[1]!, (uploads.get(upload[1]!) ?? 0) + 1);

    const refusal = refusals.find(
      (r) => r.times > 0 && r.method === req.method && (req.url ?? '').includes(r.urlIncludes),
    );
    if (refusal) {
      refusal.times--;
      refused++;
      req.resume();
      req.on('end', () =>
        res
          .writeHead(refusal.status, { 'content-type': 'application/json', ...refusal.headers })
          .end(JSON.stringify({ code: refusal.code, message: refusal.message })),
      );
      return;
    }
    if (upload && holding) {
      // Keep the connection open and the bytes unread: the client sees an upload in progress.
      req.once('data', (head: Buffer) => {
        req.pause();
        held.push({ req, res, head });
        onHeld?.(upload[1]!);
        onHeld = undefined;
      });
      return;
    }
    forward(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => [...seen],
    uploads: (hashPart) => uploads.get(hashPart) ?? 0,
    uploadBody: (hashPart) => bodies.get(hashPart),
    refused: () => refused,
    refuse: (refusal) => refusals.push({ ...refusal }),
    holdUploads: () => {
      holding = true;
      return new Promise((resolve) => {
        onHeld = resolve;
      });
    },
    releaseUploads: () => {
      holding = false;
      for (const { req, res, head } of held.splice(0)) forward(req, res, head);
    },
  };
}
