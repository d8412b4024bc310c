// What one client may hold of the server (issue 18, bug 6): a body that trickles loses its
// connection, connections beyond the cap are closed, and while the event loop lags new requests
// are shed with 503 and Retry-After, the narinfo fast path's included.
import assert from 'node:assert/strict';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildApp, type AppOptions } from '../../../src/http/app.js';
import { basic, buildTestApp, makePath, upload } from '../../helpers/build-app.js';

async function listening(t: TestContext, limits: AppOptions['limits']) {
  const h = await buildTestApp(t);
  const app = await buildApp({ service: h.service, maxNarSize: 1 << 30, maxSmallFileSize: 1 << 20, limits });
  t.after(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { h, app, port: (app.server.address() as AddressInfo).port };
}

function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

test('a body that trickles loses its connection after a window; a steady one does not', async (t) => {
  const { h, port } = await listening(t, { bodyTimeout: 1, minBodyRate: 100 });
  const open = (url: string, auth: Record<string, string>, length: number) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    const head = [`${url.startsWith('/api') ? 'POST' : 'PUT'} ${url} HTTP/1.1`, 'Host: x', `Content-Length: ${length}`];
    if (auth.authorization) head.push(`Authorization: ${auth.authorization}`);
    if (url.startsWith('/api')) head.push('Content-Type: application/json');
    socket.write(`${head.join('\r\n')}\r\n\r\n`);
    return socket;
  };
  // 8 bytes every 300 ms, well under 100 B/s, of bodies nothing refuses early: a valid NAR with a
  // token, and a JSON list without.
  const nar = makePath({ tree: { type: 'regular', contents: Buffer.alloc(100_000, 1) } });
  const json = Buffer.from(`{"storePaths": [${'"/nix/store/x",'.repeat(6_000)}"/nix/store/x"]}`);
  const bodies = [nar.file, json];
  const slow = [
    open(`/main/${nar.narUrl}`, basic(h.tokens.write), nar.file.length),
    open('/api/v1/caches/main/missing-paths', {}, json.length),
  ];
  let offset = 0;
  const trickle = setInterval(() => {
    slow.forEach((s, i) => {
      if (!s.destroyed) s.write(bodies[i]!.subarray(offset, offset + 8));
    });
    offset += 8;
  }, 300);
  t.after(() => clearInterval(trickle));
  const results = await Promise.all(slow.map((s) => closedWithin(s, 6_000)));
  assert.deepEqual(results, [true, true]);

  // A body that keeps pace (several KB a second here) is read to the end and answered.
  const path = makePath({ tree: { type: 'regular', contents: Buffer.alloc(6_000, 1) } });
  const steady = open(`/main/${path.narUrl}`, basic(h.tokens.write), path.file.length);
  let answer = '';
  steady.on('data', (d: Buffer) => {
    answer += d.toString();
  });
  for (let i = 0; i < path.file.length; i += 1000) {
    steady.write(path.file.subarray(i, i + 1000));
    await sleep(150);
  }
  while (!answer.includes('\r\n\r\n')) await sleep(20);
  steady.destroy();
  assert.match(answer, /^HTTP\/1\.1 204 /);
});

test('connections beyond maxConnections are closed at once; the others are served', async (t) => {
  const { port } = await listening(t, { maxConnections: 3 });
  const sockets: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = connect(port, '127.0.0.1');
    sockets.push(s);
    await new Promise((r) => s.once('connect', r));
  }
  await sleep(100);
  const extra = connect(port, '127.0.0.1');
  extra.on('error', () => undefined);
  extra.write('GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal(await closedWithin(extra, 3_000), true, 'the fourth connection is closed');
  const kept = sockets[0]!;
  let answer = '';
  kept.on('data', (d: Buffer) => {
    answer += d.toString();
  });
  kept.write('GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n');
  const deadline = Date.now() + 5_000;
  while (!answer.includes('StoreDir') && Date.now() < deadline) await sleep(20);
  for (const s of sockets) s.destroy();
  assert.match(answer, /^HTTP\/1\.1 200 /);
});

test('while the event loop lags, requests are shed with 503 and Retry-After, fast path included', async (t) => {
  const { h, app, port } = await listening(t, { maxEventLoopDelay: 200 });
  const path = makePath();
  await upload(h, path);
  const narinfo = `http://127.0.0.1:${port}/main/${path.hashPart}.narinfo`;
  assert.equal((await fetch(narinfo)).status, 200);
  // Stall the loop again and again, as runaway work would: every turn waits 250 ms.
  const stall = setInterval(() => {
    const until = Date.now() + 250;
    while (Date.now() < until);
  }, 1);
  try {
    const deadline = Date.now() + 15_000;
    while (!app.isUnderPressure() && Date.now() < deadline) await sleep(10);
    assert.equal(app.isUnderPressure(), true);
    for (const url of [narinfo, `http://127.0.0.1:${port}/main/nix-cache-info`]) {
      const res = await fetch(url);
      assert.equal(res.status, 503, url);
      assert.equal(res.headers.get('retry-after'), '5');
      assert.match(await res.text(), /^UNAVAILABLE: /);
    }
  } finally {
    clearInterval(stall);
  }
  // It recovers by itself once the loop keeps up again.
  const recovered = Date.now() + 10_000;
  while (app.isUnderPressure() && Date.now() < recovered) await sleep(100);
  assert.equal((await fetch(narinfo)).status, 200);
});
