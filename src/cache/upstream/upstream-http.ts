import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';

/**
 * narhub's requests to upstream caches: plain `node:http`/`https` over keep-alive connections (a
 * NAR streams through at socket speed; `fetch` would copy every chunk through web streams).
 * Redirects are followed (an upstream narhub may send NARs to S3), and every request is bounded:
 * by the caller's signal, and by `idleTimeoutMs` without a byte (which covers the connection and
 * the headers too).
 */

const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 32, maxFreeSockets: 8 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 32, maxFreeSockets: 8 }),
};

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export interface UpstreamGetOptions {
  signal: AbortSignal;
  idleTimeoutMs: number;
}

/** Why a request to an upstream failed: the network, not the answer. */
export class UpstreamTransportError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamTransportError';
  }
}

/**
 * GETs `url` and resolves with the final response once its headers are in (any status; the
 * caller reads or discards the body). Rejects with UpstreamTransportError on a connection
 * error, a timeout or an abort.
 */
export async function upstreamGet(url: string, options: UpstreamGetOptions): Promise<IncomingMessage> {
  let current = url;
  for (let hop = 0; ; hop++) {
    const response = await getOnce(current, options);
    const location = response.headers.location;
    if (!REDIRECTS.has(response.statusCode ?? 0) || location === undefined) return response;
    response.resume();
    if (hop === MAX_REDIRECTS) throw new UpstreamTransportError(`more than ${MAX_REDIRECTS} redirects from ${url}`);
    const next = new URL(location, current);
    if (next.protocol !== 'http:' && next.protocol !== 'https:')
      throw new UpstreamTransportError(`redirect to a ${next.protocol} URL`);
    current = next.href;
  }
}

function getOnce(url: string, options: UpstreamGetOptions): Promise<IncomingMessage> {
  const target = new URL(url);
  const protocol = target.protocol as 'http:' | 'https:';
  const get = protocol === 'https:' ? https.get : http.get;
  return new Promise((resolve, reject) => {
    if (options.signal.aborted) {
      reject(new UpstreamTransportError('aborted', { cause: options.signal.reason }));
      return;
    }
    const request = get(target, {
      agent: agents[protocol],
      // Nix's own clients ask for no transfer encoding; neither do we, so bytes arrive as stored.
      headers: { 'user-agent': 'narhub', accept: '*/*' },
      signal: options.signal,
    });
    request.setTimeout(options.idleTimeoutMs, () =>
      request.destroy(new UpstreamTransportError(`no answer from ${target.host} for ${options.idleTimeoutMs} ms`)),
    );
    // The timeout stays on while the body arrives: a stalled body destroys the request and its response.
    request.once('response', resolve);
    request.once('error', (err) => {
      reject(
        err instanceof UpstreamTransportError
          ? err
          : new UpstreamTransportError(`${target.host}: ${err.message}`, { cause: err }),
      );
    });
  });
}

/** Reads a small body whole, failing past `max` bytes. */
export async function readUpstreamBody(response: IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      length += chunk.length;
      if (length > max) {
        response.destroy();
        throw new UpstreamTransportError(`answer larger than ${max} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof UpstreamTransportError) throw err;
    throw new UpstreamTransportError(`answer broke off: ${(err as Error).message}`, { cause: err });
  }
  return Buffer.concat(chunks, length);
}
