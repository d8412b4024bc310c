import type { onRequestHookHandler } from 'fastify';

export interface BodyDeadline {
  /** Seconds per window. */
  windowSeconds: number;
  /** Least bytes a second a body must average over each window (0: only a silent window). */
  minBytesPerSecond: number;
}

/**
 * An `onRequest` hook that closes the connection of a request whose body trickles: less than
 * `minBytesPerSecond × windowSeconds` bytes in a window of `windowSeconds` (a whole window of
 * silence always counts). A client sending 8 bytes every 3 s would otherwise hold a socket, a
 * temporary file and a request slot for as long as it likes. The socket's own byte count is
 * read, so nothing is added to the body stream (a 'data' listener would start it flowing before
 * the handler reads it). Requests without a body are left alone.
 */
export function bodyDeadline(opts: BodyDeadline): onRequestHookHandler {
  const windowMs = opts.windowSeconds * 1000;
  const minBytes = Math.max(1, opts.minBytesPerSecond * opts.windowSeconds);
  return (request, reply, done) => {
    const req = request.raw;
    const length = req.headers['content-length'];
    const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
    const socket = req.socket;
    if (!hasBody || req.complete || typeof socket?.destroy !== 'function') return done();
    let seen = socket.bytesRead;
    const timer = setInterval(() => {
      if (req.complete || socket.destroyed) return clearInterval(timer);
      const now = socket.bytesRead;
      if (now - seen >= minBytes) {
        seen = now;
        return;
      }
      clearInterval(timer);
      request.log.info(
        { bytes: now - seen, windowSeconds: opts.windowSeconds },
        'request body too slow, connection closed',
      );
      socket.destroy();
    }, windowMs);
    timer.unref();
    // Once answered, the body is the drain's business (http/unread-body.ts), which is bounded.
    const stop = () => clearInterval(timer);
    req.once('end', stop);
    req.once('close', stop);
    reply.raw.once('finish', stop);
    reply.raw.once('close', stop);
    done();
  };
}
