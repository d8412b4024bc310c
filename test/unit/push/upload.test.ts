// The native upload of `narhub push` over a real HTTP connection: framing, retries, and what a
// failing dump, an early answer, a stale keep-alive connection or a silent server do to it.
// `nix`/`nix-store` are small shell scripts here, so a dump can be made to die mid-way; the real
// Nix client and server are in test/e2e/push.test.ts.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decompress as zstdDecompress } from 'zstd-napi';
import { createApiClient } from '../../../src/push/api-client.js';
import type { NixCommands, PathInfo } from '../../../src/push/closure.js';
import type { Progress } from '../../../src/push/progress.js';
import { push } from '../../../src/push/push.js';
import type { PushFailure } from '../../../src/push/retry.js';
import { makeTempDir, type Cleanup } from '../../helpers/tmp.js';

const LEAF = '/nix/store/0c5q4bqbzvmh3h69b2xs8lqbrhqf4zyv-leaf';
const TOP = '/nix/store/1c5q4bqbzvmh3h69b2xs8lqbrhqf4zyv-top';

interface Upload {
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** The whole body arrived (false: the client stopped or the connection dropped). */
  complete: boolean;
}

type Handler = (req: IncomingMessage, res: ServerResponse, upload: Upload) => void;

/**
 * An HTTP server that records every PUT body; `answer` decides what each upload gets once its
 * body has been read (201 by default); `onHeaders` may answer before reading the body.
 */
async function uploadServer(t: Cleanup, options: { answer?: Handler; onHeaders?: Handler } = {}) {
  const uploads: Upload[] = [];
  const server: Server = createServer((req, res) => {
    if (req.method === 'POST') {
      const parts: Buffer[] = [];
      req
        .on('data', (d: Buffer) => parts.push(d))
        .on('end', () => {
          const { storePaths } = JSON.parse(Buffer.concat(parts).toString()) as { storePaths: string[] };
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ missing: storePaths }));
        });
      return;
    }
    const upload: Upload = { url: req.url ?? '', headers: req.headers, body: Buffer.alloc(0), complete: false };
    uploads.push(upload);
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('close', () => (upload.body = Buffer.concat(parts)));
    if (options.onHeaders) {
      options.onHeaders(req, res, upload);
      return;
    }
    req.on('end', () => {
      upload.complete = true;
      upload.body = Buffer.concat(parts);
      (options.answer ?? created)(req, res, upload);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return { server, uploads, location: { base: `http://127.0.0.1:${port}`, cache: 'main', host: '127.0.0.1' } };
}

function created(_req: IncomingMessage, res: ServerResponse): void {
  res
    .writeHead(201, { 'content-type': 'application/json' })
    .end(JSON.stringify({ created: true, stored: true, fileSize: 7, narSize: 8 }));
}

function json(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

interface FakeNix {
  nix: NixCommands;
  nars: Map<string, Buffer>;
  infos: PathInfo[];
  /** Arguments of every `nix-store` run, one line each. */
  dumpArgs(): string[];
  pidFile: string;
}

/**
 * `nix` answers `path-info` with the given closure; `nix-store --dump P` prints P's NAR from a
 * file, or, with `$FAKE_DIE_AFTER` bytes, that much of it and then fails with exit 3; with
 * `$FAKE_ENDLESS` it prints zeros until killed.
 */
async function fakeNix(
  t: Cleanup,
  paths: { path: string; size: number; references?: string[] }[],
  env: Record<string, string> = {},
): Promise<FakeNix> {
  const dir = await makeTempDir(t, 'narhub-fake-nix-');
  const nars = new Map<string, Buffer>();
  const infos: PathInfo[] = paths.map(({ path, size, references }) => {
    const nar = randomBytes(size);
    nars.set(path, nar);
    writeFileSync(join(dir, path.slice('/nix/store/'.length)), nar);
    return {
      path,
      narHash: `sha256-${createHash('sha256').update(nar).digest('base64')}`,
      narSize: size,
      references: references ?? [],
      signatures: [],
    };
  });
  writeFileSync(join(dir, 'path-info.json'), JSON.stringify(infos));
  const args = join(dir, 'args');
  const pidFile = join(dir, 'pid');
  writeFileSync(args, '');
  writeFileSync(pidFile, '');
  writeFileSync(join(dir, 'nix'), `#!/bin/sh\ncat '${join(dir, 'path-info.json')}'\n`, { mode: 0o755 });
  writeFileSync(
    join(dir, 'nix-store'),
    `#!/bin/sh
echo "$*" >> '${args}'
for last; do :; done
nar='${dir}'/$(basename "$last")
if [ -n "$FAKE_ENDLESS" ]; then echo $$ > '${pidFile}'; exec cat /dev/zero; fi
if [ -n "$FAKE_DIE_AFTER" ]; then head -c "$FAKE_DIE_AFTER" "$nar"; echo "error: boom" >&2; exit 3; fi
exec cat "$nar"
`,
    { mode: 0o755 },
  );
  return {
    nix: { nix: join(dir, 'nix'), nixStore: join(dir, 'nix-store'), env: { ...process.env, ...env } },
    nars,
    infos,
    dumpArgs: () =>
      readFileSync(args, 'utf8')
        .split('\n')
        .filter((l) => l !== ''),
    pidFile,
  };
}

/** Progress that records what a push reports. */
function recorder() {
  const events: string[] = [];
  let bytes = 0;
  const progress: Progress = {
    start: () => undefined,
    bytes: (n) => void (bytes += n),
    pushed: (path) => void events.push(`pushed ${path}`),
    retrying: (path, r) => void events.push(`retrying ${path} (attempt ${r.attempt + 1}): ${r.reason}`),
    failed: (path, reason) => void events.push(`failed ${path}: ${reason}`),
    finish: () => undefined,
  };
  return { progress, events, bytes: () => bytes };
}

const noWait = { sleep: async () => undefined };

for (const size of [300_000, 20_000]) {
  test(`an upload is the metadata line, then the dump as a zstd frame, chunked; --store works (${size})`, async (t) => {
    const { uploads, location } = await uploadServer(t);
    const fake = await fakeNix(t, [{ path: LEAF, size }]);
    const client = createApiClient(location, 'Bearer nh_x', { ...fake.nix, store: '/tmp/chroot' });
    t.after(() => client.close());
    let counted = 0;
    const info = fake.infos[0]!;
    const answer = await client.uploadPath(info, (n) => (counted += n));
    assert.deepEqual(answer, { created: true, stored: true, fileSize: 7, narSize: 8 });

    const [upload] = uploads;
    assert.equal(upload!.url, `/api/v1/caches/main/paths/${LEAF.slice(11, 43)}`);
    assert.equal(upload!.headers.authorization, 'Bearer nh_x');
    assert.equal(upload!.headers['content-type'], 'application/x-narhub-path');
    assert.equal(upload!.headers['content-length'], undefined);
    assert.equal(upload!.headers['transfer-encoding'], 'chunked');
    const newline = upload!.body.indexOf(0x0a);
    assert.deepEqual(JSON.parse(upload!.body.subarray(0, newline).toString()), {
      storePath: LEAF,
      narHash: info.narHash,
      narSize: size,
      references: [],
      compression: 'zstd',
    });
    const frame = upload!.body.subarray(newline + 1);
    assert.ok(frame.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'one zstd frame follows the line');
    assert.ok(zstdDecompress(frame).equals(fake.nars.get(LEAF)!), 'which decodes to the NAR, byte for byte');
    assert.equal(counted, size, 'progress counts NAR bytes');
    assert.deepEqual(fake.dumpArgs(), [`--store /tmp/chroot --dump ${LEAF}`]);
  });
}

test('without compression: the metadata line, then the raw dump, one PUT with Content-Length', async (t) => {
  const { uploads, location } = await uploadServer(t);
  const fake = await fakeNix(t, [{ path: LEAF, size: 300_000 }]);
  const client = createApiClient(location, 'Bearer nh_x', fake.nix, { zstd: null });
  t.after(() => client.close());
  const info = fake.infos[0]!;
  await client.uploadPath(info, () => undefined);
  const [upload] = uploads;
  assert.equal(upload!.headers['transfer-encoding'], undefined);
  const newline = upload!.body.indexOf(0x0a);
  assert.deepEqual(JSON.parse(upload!.body.subarray(0, newline).toString()), {
    storePath: LEAF,
    narHash: info.narHash,
    narSize: 300_000,
    references: [],
  });
  assert.ok(upload!.body.subarray(newline + 1).equals(fake.nars.get(LEAF)!), 'the NAR follows the line, byte for byte');
  assert.equal(Number(upload!.headers['content-length']), upload!.body.length);
});

test('push retries a 503 (Retry-After) until a 201; a 400 is final, reported with its status', async (t) => {
  let refuse = 1;
  const { uploads, location } = await uploadServer(t, {
    answer: (req, res) => {
      if (refuse-- > 0) json(res, 503, { code: 'UNAVAILABLE', message: 'busy' }, { 'retry-after': '0' });
      else created(req, res);
    },
  });
  const fake = await fakeNix(t, [{ path: LEAF, size: 100_000 }]);
  const rec = recorder();
  const waits: number[] = [];
  const report = await push({
    location,
    paths: [LEAF],
    retry: { retries: 2, baseMs: 1, sleep: async (ms) => void waits.push(ms) },
    progress: rec.progress,
    nix: fake.nix,
  });
  assert.deepEqual(report.failed, []);
  assert.deepEqual(
    report.pushed.map((p) => p.path),
    [LEAF],
  );
  assert.deepEqual(rec.events, [`retrying ${LEAF} (attempt 2): HTTP 503 UNAVAILABLE: busy`, `pushed ${LEAF}`]);
  assert.equal(uploads.length, 2);
  assert.ok(uploads.every((u) => u.complete));
  assert.equal(rec.bytes(), 100_000, 'bytes of the failed attempt are taken back');
  assert.equal(waits.length, 1);

  const bad = await uploadServer(t, {
    answer: (_req, res) => json(res, 400, { code: 'NAR_INVALID', message: 'not a NAR' }),
  });
  const rec2 = recorder();
  const failed = await push({
    location: bad.location,
    paths: [LEAF],
    retry: { retries: 3, ...noWait },
    progress: rec2.progress,
    nix: fake.nix,
  });
  assert.deepEqual(failed.failed, [
    { path: LEAF, reason: 'HTTP 400 NAR_INVALID: not a NAR', transient: false, status: 400, dependsOn: undefined },
  ]);
  assert.equal(bad.uploads.length, 1, '4xx is not retried');
});

test('a dump dying mid-way fails its path (no retry) and dependents; the server never gets a whole body', async (t) => {
  const { uploads, location } = await uploadServer(t);
  const fake = await fakeNix(
    t,
    [
      { path: LEAF, size: 2_000_000 },
      { path: TOP, size: 1000, references: [LEAF] },
    ],
    { FAKE_DIE_AFTER: '1000000' },
  );
  const rec = recorder();
  const report = await push({
    location,
    paths: [TOP],
    retry: { retries: 3, ...noWait },
    progress: rec.progress,
    nix: fake.nix,
  });
  assert.deepEqual(report.pushed, []);
  assert.deepEqual(report.failed, [
    {
      path: LEAF,
      reason: 'nix-store --dump failed (exit 3): error: boom',
      transient: false,
      status: undefined,
      dependsOn: undefined,
    },
    { path: TOP, reason: `its reference ${LEAF} was not pushed`, transient: false, status: undefined, dependsOn: LEAF },
  ]);
  assert.equal(uploads.length, 1, 'one attempt, for the leaf only');
  await waitFor(() => uploads[0]!.body.length > 0);
  assert.equal(uploads[0]!.complete, false, 'the request was cut off, not ended short (no last chunk)');
});

test('a dump that ends cleanly but short of NarSize is refused before the body ends', async (t) => {
  const { uploads, location } = await uploadServer(t);
  const fake = await fakeNix(t, [{ path: LEAF, size: 5000 }]);
  const client = createApiClient(location, undefined, fake.nix);
  t.after(() => client.close());
  const info = { ...fake.infos[0]!, narSize: 6000 };
  await assert.rejects(
    client.uploadPath(info, () => undefined),
    (err: PushFailure) => {
      assert.equal(err.message, "nix-store --dump gave 5000 bytes, but the path's NarSize is 6000");
      assert.equal(err.transient, false);
      return true;
    },
  );
  await waitFor(() => uploads.length === 1 && uploads[0]!.body.length > 0);
  assert.equal(uploads[0]!.complete, false);
});

test('an answer before the body is all sent stops the dump and is reported', async (t) => {
  let received = 0;
  const { location } = await uploadServer(t, {
    onHeaders: (req, res) => {
      // Refuse once the dump is surely running (zeros: 4 KiB of zstd frame is over 100 MB of NAR).
      req.on('data', (d: Buffer) => {
        received += d.length;
        if (received >= 4096 && !res.headersSent)
          json(res, 403, { code: 'FORBIDDEN', message: 'the token may not write to main' });
      });
    },
  });
  const fake = await fakeNix(t, [{ path: LEAF, size: 1000 }], { FAKE_ENDLESS: '1' });
  const client = createApiClient(location, undefined, fake.nix);
  t.after(() => client.close());
  // The dump never ends: only the answer can end this upload.
  const info = { ...fake.infos[0]!, narSize: 2 ** 40 };
  await assert.rejects(
    client.uploadPath(info, () => undefined),
    (err: PushFailure) => {
      assert.equal(err.message, 'HTTP 403 FORBIDDEN: the token may not write to main');
      assert.equal(err.transient, false);
      return true;
    },
  );
  const pid = Number(readFileSync(fake.pidFile, 'utf8'));
  assert.ok(pid > 0);
  await waitFor(() => !alive(pid));
  const after = received;
  await sleep(100);
  assert.equal(received, after, 'nothing more is sent');
});

test('a kept-alive connection the server closed is replaced at once, without a retry', async (t) => {
  const { server, uploads, location } = await uploadServer(t);
  const fake = await fakeNix(t, [{ path: LEAF, size: 50_000 }]);
  const client = createApiClient(location, undefined, fake.nix);
  t.after(() => client.close());
  for (let round = 0; round < 3; round++) {
    assert.deepEqual((await client.missingPaths([LEAF])).missing, [LEAF]);
    server.closeAllConnections();
    let counted = 0;
    const answer = await client.uploadPath(fake.infos[0]!, (n) => (counted += n));
    assert.equal(answer.created, true);
    assert.equal(counted, 50_000);
    server.closeAllConnections();
  }
  assert.ok(uploads.filter((u) => u.complete).length === 3);
});

test("a NAR from a given stream instead of nix-store; that stream's error comes back unchanged", async (t) => {
  const { uploads, location } = await uploadServer(t);
  const fake = await fakeNix(t, [{ path: LEAF, size: 10 }]);
  const client = createApiClient(location, undefined, { nixStore: '/nonexistent/nix-store' });
  t.after(() => client.close());
  const nar = randomBytes(200_000);
  const info = { ...fake.infos[0]!, narSize: nar.length };
  const answer = await client.uploadPath(
    info,
    () => undefined,
    undefined,
    () => Readable.from([nar.subarray(0, 70_000), nar.subarray(70_000)]),
  );
  assert.equal(answer.created, true);
  assert.ok(zstdDecompress(uploads[0]!.body.subarray(uploads[0]!.body.indexOf(0x0a) + 1)).equals(nar));

  class SourceBroke extends Error {}
  const broken = () =>
    new Readable({
      read() {
        this.push(nar.subarray(0, 1000));
        this.destroy(new SourceBroke('the serve connection died'));
      },
    });
  await assert.rejects(
    client.uploadPath(info, () => undefined, undefined, broken),
    SourceBroke,
  );
});

test('a server that stops answering fails the upload as transient after the idle timeout', async (t) => {
  const { location } = await uploadServer(t, { answer: () => undefined });
  const fake = await fakeNix(t, [{ path: LEAF, size: 1000 }]);
  const client = createApiClient(location, undefined, fake.nix, { idleTimeoutMs: 300 });
  t.after(() => client.close());
  await assert.rejects(
    client.uploadPath(fake.infos[0]!, () => undefined),
    (err: PushFailure) => {
      assert.match(err.message, /^no answer from the server for/);
      assert.equal(err.transient, true);
      return true;
    },
  );
});

test('nix-store that cannot be started is a final failure', async (t) => {
  const { location } = await uploadServer(t);
  const fake = await fakeNix(t, [{ path: LEAF, size: 1000 }]);
  const client = createApiClient(location, undefined, { nixStore: '/nonexistent/nix-store' });
  t.after(() => client.close());
  await assert.rejects(
    client.uploadPath(fake.infos[0]!, () => undefined),
    (err: PushFailure) => {
      assert.match(err.message, /^cannot run nix-store --dump: .*ENOENT/);
      assert.equal(err.transient, false);
      return true;
    },
  );
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(ok: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await sleep(10);
  }
}
