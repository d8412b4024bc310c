import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';

/**
 * A Server-Sent Events response: the reply taken over from Fastify, sent uncached and unbuffered
 * by proxies, with a comment every 15 s so an idle connection stays open (the keep-alive stops
 * when the response closes). `send` writes one event, each line of `data` a `data:` line.
 */
export function openEventStream(reply: FastifyReply): { res: ServerResponse; send(event: string, data: string): void } {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  res.on('close', () => clearInterval(keepAlive));
  return {
    res,
    send(event, data) {
      res.write(
        `event: ${event}\n${data
          .split('\n')
          .map((l) => `data: ${l}`)
          .join('\n')}\n\n`,
      );
    },
  };
}
