// Two real servers over one cache service, one with the narinfo fast path
// (src/http/narinfo-fast-path.ts) and one without, asked the same raw HTTP requests: status line,
// every header line in order (Date aside) and body must be byte-identical.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { TestContext } from 'node:test';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildApp, narinfoFastPathOf } from '../../src/http/app.js';
import type { NarinfoFastPath } from '../../src/http/narinfo-fast-path.js';
import { buildTestApp, type TestApp } from './build-app.js';

export interface RawResponse {
  statusLine: string;
  /** Header lines as sent, Date's value blanked. */
  headers: string[];
  body: Buffer;
}

/** One request on a fresh connection, read byte for byte (the body by its Content-Length). */
export function rawRequest(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  version = '1.1',
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = (res: RawResponse) => {
      socket.destroy();
      resolve(res);
    };
    const parse = (): RawResponse | undefined => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const [statusLine, ...lines] = all.subarray(0, end).toString('latin1').split('\r\n');
      const length = Number(lines.find((l) => /^content-length:/i.test(l))?.split(':')[1] ?? 0);
      const body = all.subarray(end + 4);
      if (method !== 'HEAD' && body.length < length) return undefined;
      return { statusLine: statusLine!, headers: lines.map((l) => (/^date:/i.test(l) ? 'Date: <now>' : l)), body };
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const res = parse();
      if (res) done(res);
    });
    socket.on('end', () => {
      const res = parse();
      if (res) done(res);
      else reject(new Error(`connection closed before a whole response to ${method} ${path}`));
    });
    socket.on('error', reject);
    const head = [
      `${method} ${path} HTTP/${version}`,
      'Host: localhost',
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    socket.write(`${head.join('\r\n')}\r\n\r\n`);
  });
}

export interface Pair {
  h: TestApp;
  fast: FastifyInstance;
  plain: FastifyInstance;
  fastPath: NarinfoFastPath;
  /** Asks both servers; asserts identical answers; returns the answer and whether the fast path took it. */
  same(
    method: string,
    path: string,
    headers?: Record<string, string>,
    version?: string,
  ): Promise<RawResponse & { fastPath: boolean }>;
}

export async function pair(t: TestContext): Promise<Pair> {
  const h = await buildTestApp(t, { caches: [{ name: 'priv', private: true }] });
  const options = { service: h.service, maxNarSize: 64 * 1024 * 1024, maxSmallFileSize: 1024 * 1024 };
  const fast = await buildApp(options);
  const plain = await buildApp({ ...options, narinfoFastPath: false });
  t.after(async () => {
    await fast.close();
    await plain.close();
  });
  await fast.listen({ host: '127.0.0.1', port: 0 });
  await plain.listen({ host: '127.0.0.1', port: 0 });
  const fastPath = narinfoFastPathOf(fast);
  assert.ok(fastPath, 'the app has a fast path by default');
  assert.equal(narinfoFastPathOf(plain), undefined);
  const port = (app: FastifyInstance) => (app.server.address() as AddressInfo).port;
  return {
    h,
    fast,
    plain,
    fastPath,
    async same(method, path, headers = {}, version = '1.1') {
      const before = fastPath.served;
      const viaFast = await rawRequest(port(fast), method, path, headers, version);
      const fastPathTook = fastPath.served - before;
      const viaRoute = await rawRequest(port(plain), method, path, headers, version);
      const what = `${method} ${path} ${JSON.stringify(headers)}`;
      assert.equal(viaFast.statusLine, viaRoute.statusLine, what);
      assert.deepEqual(viaFast.headers, viaRoute.headers, what);
      assert.ok(viaFast.headers.includes('Date: <now>'), `${what}: Date is sent`);
      assert.equal(viaFast.body.toString('latin1'), viaRoute.body.toString('latin1'), what);
      assert.ok(fastPathTook === 0 || fastPathTook === 1);
      return { ...viaFast, fastPath: fastPathTook === 1 };
    },
  };
}
