// The event loop stays responsive while a large native upload is validated, hashed, compressed
// (on zstd's own threads) and stored. A correctness bound, not a benchmark: the client is a
// separate process (curl) over a real socket, so only the server's work is on this loop.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { test } from 'node:test';
import { encodeNix32 } from '../../../src/nix/nix32.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { bearer, buildTestApp, randomHashPart } from '../../helpers/build-app.js';

const CONTENT_BYTES = 200 * 1024 * 1024;
const CHUNK = 1024 * 1024;

/** str(s) framing of the NAR format: u64 LE length, bytes, zero padding to 8. */
function str(bytes: Buffer): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([len, bytes, Buffer.alloc((8 - (bytes.length % 8)) % 8)]);
}

/**
 * Writes `<metadata line>\n<NAR of one regular file>` to `file` without holding the NAR in
 * memory: the NAR goes after a blank line of fixed width, which is filled in once the hash is
 * known (JSON allows the trailing spaces). The contents are base64 of random bytes:
 * compressible, like text, and never repetitive.
 */
async function writeBody(file: string, storePath: string): Promise<{ narHash: string; narSize: number }> {
  const LINE = 512;
  const head = Buffer.concat(['nix-archive-1', '(', 'type', 'regular', 'contents'].map((s) => str(Buffer.from(s))));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(CONTENT_BYTES));
  const tail = str(Buffer.from(')'));
  const hash = createHash('sha256');
  let narSize = 0;
  const out = createWriteStream(file);
  const write = (b: Buffer, nar = true) => {
    if (nar) {
      hash.update(b);
      narSize += b.length;
    }
    return new Promise<void>((resolve, reject) => out.write(b, (err) => (err ? reject(err) : resolve())));
  };
  await write(Buffer.alloc(LINE, ' '), false);
  await write(head);
  await write(len);
  for (let done = 0; done < CONTENT_BYTES; done += CHUNK) await write(Buffer.from(randomBytes((CHUNK / 4) * 3).toString('base64')));
  await write(tail);
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));

  const narHash = `sha256:${encodeNix32(hash.digest())}`;
  const line = Buffer.alloc(LINE, ' ');
  line.write(JSON.stringify({ storePath, narHash, narSize, references: [] }));
  line[LINE - 1] = 0x0a;
  const fh = await open(file, 'r+');
  try {
    await fh.write(line, 0, LINE, 0);
  } finally {
    await fh.close();
  }
  return { narHash, narSize };
}

function curlPut(url: string, file: string, token: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '-T', file, '-H', `Authorization: Bearer ${token}`, '-H', 'Content-Type: application/x-narhub-path', '-w', '\n%{http_code}', url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

/** Event-loop delay percentiles (ms) while `work` runs. Idle, p50 is about the 10 ms resolution. */
async function delayDuring(work: () => Promise<unknown>): Promise<{ p50: number; p99: number; max: number }> {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  await work();
  delay.disable();
  return { p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 };
}

const ms = (x: number) => `${x.toFixed(1)} ms`;

test('the event loop stays responsive during a ~200 MB native upload over a real socket', async (t) => {
  const h = await buildTestApp(t, { maxNarSize: 1024 * 1024 * 1024 });
  const dir = await mkdtemp(join(tmpdir(), 'narhub-loop-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const hashPart = randomHashPart();
  const storePath = `/nix/store/${hashPart}-big`;
  const file = join(dir, 'body');
  const { narHash, narSize } = await writeBody(file, storePath);
  const address = await h.app.listen({ host: '127.0.0.1', port: 0 });

  // The bound is generous (100 ms over what the same loop shows idle just before, since the
  // test machine is shared and noisy), and a bad attempt is tried again in a fresh cache: a
  // loop that really blocks (zstd or hashing on it) fails every attempt, load spikes do not.
  const attempts: string[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    const cache = `loop${attempt}`;
    await h.service.registry.create(cache, { private: false, priority: 40 });
    const token = h.token(cache, 'write').token;
    const idle = await delayDuring(() => new Promise((resolve) => setTimeout(resolve, 1000)));
    let res: Awaited<ReturnType<typeof curlPut>> | undefined;
    const started = performance.now();
    const busy = await delayDuring(async () => {
      res = await curlPut(`${address}/api/v1/caches/${cache}/paths/${hashPart}`, file, token);
    });
    const seconds = (performance.now() - started) / 1000;
    const status = res!.out.trim().split('\n').at(-1);
    assert.equal(status, '201', `curl exit ${res!.code}: ${res!.out}\n${res!.err}`);
    const info = parseNarInfo((await h.request('GET', `/${cache}/${hashPart}.narinfo`)).body);
    assert.equal(info.narHash, narHash);
    assert.equal(info.narSize, narSize);
    assert.equal(info.compression, 'zstd');
    assert.ok(info.fileSize! < narSize, `compressed ${info.fileSize} < ${narSize}`);

    const bound = 100 + Math.max(0, idle.p99 - 10);
    const line =
      `attempt ${attempt}: ${(narSize / 1024 / 1024).toFixed(0)} MiB NAR in ${seconds.toFixed(2)} s; event-loop delay ` +
      `p50 ${ms(busy.p50)}, p99 ${ms(busy.p99)}, max ${ms(busy.max)} (idle before: p99 ${ms(idle.p99)}; bound ${ms(bound)})`;
    t.diagnostic(line);
    attempts.push(line);
    if (busy.p99 < bound) return;
  }
  assert.fail(`the event loop was too slow in every attempt:\n${attempts.join('\n')}`);
});
