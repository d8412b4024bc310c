// A TCP relay in front of a local server that a test can take away and bring back on the same
// port: clients then meet refused connections, as they do while a server restarts. It can also
// slow what clients send, so a test can act while an upload is under way.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cleanup } from './tmp.js';

export interface TcpProxy {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** Stops listening and cuts every open connection: new ones are refused. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
}

export interface TcpProxyOptions {
  /** Client-to-server bytes a second per connection (unlimited when unset). */
  bytesPerSecond?: number;
  /** Called with every chunk a client sends, once it went on to the server. */
  onClientBytes?: (bytes: number) => void;
}

/** Passes client bytes on at most `bytesPerSecond`, reporting each chunk once passed. */
function pacer(opts: TcpProxyOptions): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const wait = opts.bytesPerSecond === undefined ? 0 : (chunk.length / opts.bytesPerSecond) * 1000;
      sleep(wait).then(() => {
        opts.onClientBytes?.(chunk.length);
        done(null, chunk);
      });
    },
  });
}

export async function startTcpProxy(
  t: Cleanup,
  target: { host: string; port: number },
  opts: TcpProxyOptions = {},
): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = async () => {
    const s = createServer((client) => {
      const upstream = createConnection(target);
      for (const sock of [client, upstream]) {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
        sock.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      if (opts.bytesPerSecond === undefined && opts.onClientBytes === undefined) client.pipe(upstream).pipe(client);
      else {
        client.pipe(pacer(opts)).pipe(upstream);
        upstream.pipe(client);
      }
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    port = (s.address() as { port: number }).port;
    server = s;
  };
  const down = async () => {
    const s = server;
    server = undefined;
    for (const sock of sockets) sock.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  t.after(down);
  return { url: `http://127.0.0.1:${port}`, down, up: listen };
}
