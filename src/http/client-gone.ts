import type { FastifyReply } from 'fastify';

/**
 * Aborts when the client goes away before its response is complete. (Fastify's
 * `request.signal` follows the request's 'close', which Node also emits once an upload body has
 * been read completely, so it would abort work still in progress on a healthy request.)
 */
export function clientGoneSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const res = reply.raw;
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(new Error('client went away'));
  });
  return controller.signal;
}
