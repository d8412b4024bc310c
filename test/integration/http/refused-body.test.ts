// A Nix-protocol upload refused mid-body: the answer reaches the client while narhub reads and
// throws away the rest of the body, but only so much (DRAIN_MAX_BYTES); and a client that goes
// away mid-body is not a server error.
import assert from 'node:assert/strict';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { buildApp } from '../../../src/http/app.js';
import { DRAIN_MAX_BYTES } from '../../../src/http/unread-body.js';
import { basic, buildTestApp, makePath } from '../../helpers/build-app.js';

async function server(t: TestContext) {
  const h = await buildTestApp(t);
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const app = await buildApp({
    service: h.service,
    logger: pino({ level: 'debug' }, sink),
    maxNarSize: 1 << 30,
    maxSmallFileSize: 1 << 20,
  });
  t.after(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { h, lines, port: (app.server.address() as AddressInfo).port };
}

const INVALID_START = Buffer.concat([
  Buffer.from([13, 0, 0, 0, 0, 0, 0, 0]),
  Buffer.from('nix-archive-1\0\0\0'),
  Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]),
]);

function putHead(port: number, token: string, length: number): Socket {
  const socket = connect(port, '127.0.0.1');
  socket.write(
    [
      `PUT /main/nar/${'1'.repeat(52)}.nar HTTP/1.1`,
      'Host: localhost',
      `Authorization: ${basic(token).authorization}`,
      'Content-Type: application/x-nix-nar',
      `Content-Length: ${length}`,
      '',
      '',
    ].join('\r\n'),
  );
  return socket;
}

test('a client that sends on after the refusal reads it, and is cut off past the drain bound', async (t) => {
  const { h, port } = await server(t);
  const socket = putHead(port, h.tokens.write, 1 << 30);
  let answer = '';
  socket.on('data', (chunk: Buffer) => {
    answer += chunk.toString('latin1');
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  socket.write(INVALID_START);
  // Send on regardless, as a client that does not read answers would, until the server stops us.
  const chunk = Buffer.alloc(1 << 20, 7);
  let sent = INVALID_START.length;
  let open = true;
  void closed.then(() => {
    open = false;
  });
  while (open && sent < 4 * DRAIN_MAX_BYTES) {
    if (!socket.write(chunk)) await Promise.race([new Promise((r) => socket.once('drain', r)), closed]);
    sent += chunk.length;
  }
  await closed;
  assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(answer, /\r\n\r\nNAR_INVALID: [^\n]+\n/);
  // Cut off near the bound (what the socket buffers hold on both sides comes on top).
  assert.ok(sent > DRAIN_MAX_BYTES / 2, `cut off after only ${sent} bytes`);
  assert.ok(sent < DRAIN_MAX_BYTES + 48 * (1 << 20), `still sending after ${sent} bytes`);
});

test('a refused upload whose client sends the rest keeps its connection for the next request', async (t) => {
  const { h, port } = await server(t);
  const rest = Buffer.alloc(3 << 20, 7);
  const socket = putHead(port, h.tokens.write, INVALID_START.length + rest.length);
  let answer = '';
  socket.on('data', (chunk: Buffer) => {
    answer += chunk.toString('latin1');
  });
  socket.write(INVALID_START);
  socket.write(rest);
  while (!answer.includes('NAR_INVALID')) await sleep(10);
  socket.write('GET /main/nix-cache-info HTTP/1.1\r\nHost: localhost\r\n\r\n');
  while (!answer.includes('StoreDir')) await sleep(10);
  socket.destroy();
  assert.match(answer, /^HTTP\/1\.1 400 /);
  assert.match(answer, /HTTP\/1\.1 200 OK[\s\S]*StoreDir: \/nix\/store/);
});

test('a client that goes away mid-upload is logged below error level, and nothing is left', async (t) => {
  const { h, lines, port } = await server(t);
  const path = makePath({ tree: { type: 'regular', contents: Buffer.alloc(8 << 20, 1) } });
  for (let i = 0; i < 5; i++) {
    const socket = putHead(port, h.tokens.write, path.file.length);
    socket.on('error', () => undefined);
    socket.write(path.file.subarray(0, 1 << 20));
    await sleep(50);
    socket.destroy();
  }
  await sleep(500);
  const errors = lines.filter((l) => l.level >= 50);
  assert.deepEqual(errors, []);
  assert.equal((await h.request('HEAD', `/main/${path.narUrl}`)).statusCode, 404);
});

test('a client leaving while its upload waits for another of the same NAR file raises no uncaught error', async (t) => {
  const { h, lines, port } = await server(t);
  const path = makePath({ tree: { type: 'regular', contents: Buffer.alloc(8 << 20, 1) } });
  // The first upload holds the NAR file's lock while it waits for the rest of its body.
  const first = putHead(port, h.tokens.write, path.file.length);
  first.on('error', () => undefined);
  first.write(path.file.subarray(0, 1 << 20));
  await sleep(200);
  // The second waits for that lock, its body unread, when its client goes away.
  const second = putHead(port, h.tokens.write, path.file.length);
  second.on('error', () => undefined);
  second.write(path.file.subarray(0, 1 << 20));
  await sleep(200);
  second.destroy();
  await sleep(300);
  first.destroy();
  await sleep(300);
  assert.deepEqual(
    lines.filter((l) => l.level >= 50),
    [],
  );
  // Neither left the file's lock held: a third upload of that name is answered (refused: invalid NAR).
  const third = h.request('PUT', `/main/nar/${'1'.repeat(52)}.nar`, {
    body: INVALID_START,
    headers: { ...basic(h.tokens.write), 'content-type': 'application/x-nix-nar' },
  });
  const answered = await Promise.race([third.then((r) => r.statusCode), sleep(10_000, 'no answer in 10 s')]);
  assert.equal(answered, 400);
});
