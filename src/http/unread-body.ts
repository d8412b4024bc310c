import { PassThrough, type Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { NarhubError } from '../errors.js';

/**
 * How much of a refused upload is read and thrown away so that the client reads the refusal.
 * A client that stops sending once it has an answer (curl, so Nix) needs far less; one that
 * sends on regardless gets its socket closed past either bound.
 */
export const DRAIN_MAX_BYTES = 64 * 1024 * 1024;
const DRAIN_MAX_MS = 30_000;

/**
 * Reads and discards the rest of a request body, so that the answer already sent reaches the
 * client on a live connection instead of a reset (closing a socket with unread bytes makes the
 * kernel send RST, and the client may lose the answer with it). Bounded: past `maxBytes` or
 * `maxMs` the socket is destroyed.
 */
function drainBody(body: Readable, maxBytes = DRAIN_MAX_BYTES, maxMs = DRAIN_MAX_MS): void {
  if (body.destroyed || body.readableEnded) return;
  const socket = (body as Partial<FastifyRequest['raw']>).socket;
  let bytes = 0;
  const stop = () => {
    clearTimeout(timer);
    body.off('data', count);
    if (socket && !socket.destroyed) socket.destroy();
    else body.destroy();
  };
  const count = (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > maxBytes) stop();
  };
  const timer = setTimeout(stop, maxMs);
  timer.unref();
  body.on('data', count);
  body.on('error', () => undefined);
  body.once('close', () => clearTimeout(timer));
  body.once('end', () => clearTimeout(timer));
  body.resume();
}

/**
 * Runs `work` on the request's body through a stand-in stream, so that the work may destroy its
 * input on failure (as `pipeline` does) without destroying the request, and with it the socket.
 * If the work fails, what the client has not sent yet is drained (bounded), and the failure is
 * rethrown for the error handler to answer.
 */
export async function refuseUnreadBody<T>(request: FastifyRequest, work: (body: Readable) => Promise<T>): Promise<T> {
  const raw = request.raw;
  const body = new PassThrough({ highWaterMark: 1 << 20 });
  const aborted = () => body.destroy(new NarhubError('BAD_REQUEST', 'upload aborted before the body was complete'));
  // The work may not read the body yet (it can wait for the NAR file's lock) when the client goes
  // away: the error then stays on the stream, which the work finds destroyed when it reads, rather
  // than being emitted with no listener, which would be an uncaught exception.
  body.on('error', () => undefined);
  raw.once('aborted', aborted).once('error', aborted);
  raw.pipe(body);
  try {
    return await work(body);
  } catch (err) {
    raw.unpipe(body);
    if (!body.destroyed) body.destroy();
    drainBody(raw);
    throw err;
  } finally {
    raw.off('aborted', aborted).off('error', aborted);
  }
}
