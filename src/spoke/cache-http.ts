import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';

/** A request whose connection stays silent this long fails (a NAR may take a while to start). */
const IDLE_TIMEOUT_MS = 300_000;

export interface CacheRequest {
  headers?: OutgoingHttpHeaders;
  body?: Buffer;
  signal?: AbortSignal | undefined;
}

/**
 * A spoke's HTTP connections to the cache, kept alive and shared by all its jobs. `node:http`
 * rather than fetch: a job makes a dozen small requests, and fetch's web streams and abort
 * plumbing cost several times the CPU of the request itself.
 */
export interface CacheHttp {
  /** Sends the request; resolves with the response (any status) once its head has arrived. */
  request(method: string, url: string, opts?: CacheRequest): Promise<IncomingMessage>;
  /** The keep-alive agent for `url`'s protocol (for clients that send their own requests). */
  agentFor(url: string): HttpAgent;
  /** Closes the idle connections. */
  close(): void;
}

export function createCacheHttp(opts: { idleTimeoutMs?: number } = {}): CacheHttp {
  const http = new HttpAgent({ keepAlive: true });
  const https = new HttpsAgent({ keepAlive: true });
  const idleTimeoutMs = opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
  const agentFor = (url: string) => (url.startsWith('https:') ? https : http);
  return {
    agentFor,
    request(method, url, o = {}) {
      return new Promise((resolve, reject) => {
        const send = url.startsWith('https:') ? httpsRequest : httpRequest;
        const headers: OutgoingHttpHeaders = { ...o.headers };
        if (o.body !== undefined) headers['content-length'] = o.body.length;
        const req = send(
          url,
          { method, agent: agentFor(url), headers, timeout: idleTimeoutMs, ...(o.signal ? { signal: o.signal } : {}) },
          resolve,
        );
        req.once('timeout', () => req.destroy(new Error(`no answer for ${Math.round(idleTimeoutMs / 1000)} s`)));
        req.once('error', reject);
        req.end(o.body);
      });
    },
    close() {
      http.destroy();
      https.destroy();
    },
  };
}

/** A response's (or any stream's) body as text, at most `max` bytes of it (the rest is read and dropped). */
export async function responseText(res: Readable, max = 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of res) {
    const buf = chunk as Buffer;
    if (length < max) chunks.push(buf.subarray(0, max - length));
    length += buf.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A whole response body; fails if it is longer than `max` bytes. */
export async function responseBytes(res: Readable, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of res) {
    const buf = chunk as Buffer;
    length += buf.length;
    if (length > max) {
      res.destroy();
      throw new Error(`the answer is longer than ${max} bytes`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks, length);
}

/** A 2xx status. */
export const okStatus = (status: number) => status >= 200 && status < 300;

/** The cache answered with this status: worth another try for 5xx, 408 and 429 only. */
export const retryableStatus = (status: number) => status >= 500 || status === 408 || status === 429;
