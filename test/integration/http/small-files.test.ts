// Build logs, realisations (both layouts), debuginfo entries and `.ls` listings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { brotliCompressSync, brotliDecompressSync } from 'node:zlib';
import {
  basic,
  buildTestApp,
  compressBytes,
  makePath,
  putNar,
  putNarinfo,
  randomHashPart,
  type TestApp,
} from '../../helpers/build-app.js';

async function getAndHead(h: TestApp, url: string) {
  const get = await h.request('GET', url);
  const head = await h.request('HEAD', url);
  assert.equal(head.statusCode, get.statusCode, `HEAD ${url}`);
  if (get.statusCode === 200) {
    assert.equal(head.body, '', `HEAD ${url} has no body`);
    assert.equal(head.headers['content-type'], get.headers['content-type'], `HEAD ${url} content-type`);
    assert.equal(head.headers['content-encoding'], get.headers['content-encoding'], `HEAD ${url} content-encoding`);
    assert.equal(Number(head.headers['content-length']), get.rawPayload.length, `HEAD ${url} content-length`);
  }
  return get;
}

test('logs: PUT log/<drv>, GET returns it with its content type; re-PUT replaces it', async (t) => {
  const h = await buildTestApp(t);
  const w = basic(h.tokens.write);
  const drv = `${randomHashPart()}-hello-2.12.drv`;
  const url = `/main/log/${drv}`;
  assert.equal((await getAndHead(h, url)).statusCode, 404);

  const log = 'building…\nmake: Nothing to be done.\n';
  const put = await h.request('PUT', url, {
    body: log,
    headers: { ...w, 'content-type': 'text/plain; charset=utf-8' },
  });
  assert.equal(put.statusCode, 204, put.body);
  const got = await getAndHead(h, url);
  assert.equal(got.statusCode, 200);
  assert.equal(got.body, log);
  assert.equal(got.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(got.headers['content-encoding'], undefined);

  // `nix store copy-log` again: upsert.
  const put2 = await h.request('PUT', url, {
    body: 'second attempt\n',
    headers: { ...w, 'content-type': 'text/plain; charset=utf-8' },
  });
  assert.equal(put2.statusCode, 204);
  assert.equal((await h.request('GET', url)).body, 'second attempt\n');

  // Not a derivation: refused, nothing stored.
  const notDrv = `/main/log/${randomHashPart()}-hello`;
  const bad = await h.request('PUT', notDrv, { body: log, headers: { ...w, 'content-type': 'text/plain' } });
  assert.equal(bad.statusCode, 400, bad.body);
  assert.match(bad.body, /^[A-Z_]+: [^\n]+\n$/);
});

test('logs uploaded with a Content-Encoding are served with it (Nix 2.32+ log-compression)', async (t) => {
  const h = await buildTestApp(t);
  const drv = `${randomHashPart()}-compressed.drv`;
  const log = `${'x'.repeat(2000)}\n`;
  const body = brotliCompressSync(Buffer.from(log));
  const put = await h.request('PUT', `/main/log/${drv}`, {
    body,
    headers: { ...basic(h.tokens.write), 'content-type': 'text/plain; charset=utf-8', 'content-encoding': 'br' },
  });
  assert.equal(put.statusCode, 204, put.body);
  const got = await getAndHead(h, `/main/log/${drv}`);
  assert.equal(got.statusCode, 200);
  assert.equal(got.headers['content-encoding'], 'br');
  assert.ok(got.rawPayload.equals(body), 'the stored bytes, not re-encoded');
  assert.equal(brotliDecompressSync(got.rawPayload).toString(), log);
});

// Nix 2.34+ let libcurl name and decode the codings: gzip, deflate, br, zstd, never xz.
test('a log stored as xz goes out decoded when Accept-Encoding lacks xz (Nix 2.34+), else as stored', async (t) => {
  const h = await buildTestApp(t);
  const url = `/main/log/${randomHashPart()}-xz.drv`;
  const log = `${'building\n'.repeat(300)}done\n`;
  const body = compressBytes(Buffer.from(log), 'xz');
  const put = await h.request('PUT', url, {
    body,
    headers: { ...basic(h.tokens.write), 'content-type': 'text/plain; charset=utf-8', 'content-encoding': 'xz' },
  });
  assert.equal(put.statusCode, 204, put.body);

  // Nix 2.34's own request, one that refuses xz outright, and one that takes anything but xz.
  for (const accept of ['deflate, gzip, br, zstd', 'gzip, xz;q=0', '*, xz;q=0']) {
    const get = await h.request('GET', url, { headers: { 'accept-encoding': accept } });
    assert.equal(get.statusCode, 200, accept);
    assert.equal(get.headers['content-encoding'], undefined, accept);
    assert.equal(get.headers.vary, 'Accept-Encoding', accept);
    assert.equal(get.body, log, accept);
    assert.equal(Number(get.headers['content-length']), Buffer.byteLength(log), accept);
    const head = await h.request('HEAD', url, { headers: { 'accept-encoding': accept } });
    assert.equal(head.headers['content-encoding'], undefined, accept);
    assert.equal(Number(head.headers['content-length']), Buffer.byteLength(log), `HEAD, ${accept}`);
  }
  // Nix 2.26 names xz; Nix 2.8 names nothing (and decodes every compression Nix writes): stored bytes.
  const asStored: Record<string, string>[] = [
    { 'accept-encoding': 'zstd, br, gzip, deflate, bzip2, xz' },
    { 'accept-encoding': '*' },
    {},
  ];
  for (const headers of asStored) {
    const get = await h.request('GET', url, { headers });
    assert.equal(get.headers['content-encoding'], 'xz', JSON.stringify(headers));
    assert.equal(get.headers.vary, 'Accept-Encoding');
    assert.ok(get.rawPayload.equals(body), `the stored bytes for ${JSON.stringify(headers)}`);
  }
});

test('a log uploaded as text/html is served as text/plain, nosniff; a false Content-Encoding is 400', async (t) => {
  const h = await buildTestApp(t);
  const w = basic(h.tokens.write);
  const html = '<html><script>alert(document.cookie)</script></html>\n';
  for (const type of ['text/html', 'application/xhtml+xml', 'image/svg+xml', 'text/javascript']) {
    const url = `/main/log/${randomHashPart()}-page.drv`;
    const put = await h.request('PUT', url, { body: html, headers: { ...w, 'content-type': type } });
    assert.equal(put.statusCode, 204, put.body);
    const got = await getAndHead(h, url);
    assert.equal(got.headers['content-type'], 'text/plain; charset=utf-8', `uploaded as ${type}`);
    assert.equal(got.headers['x-content-type-options'], 'nosniff', `uploaded as ${type}`);
    assert.equal(got.body, html);
  }
  // A body that is not gzip, declared gzip, would be served as gzip: refused, nothing stored.
  for (const encoding of ['gzip', 'br', 'xz', 'zstd', 'bzip2']) {
    const url = `/main/log/${randomHashPart()}-liar.drv`;
    const put = await h.request('PUT', url, {
      body: html,
      headers: { ...w, 'content-type': 'text/plain', 'content-encoding': encoding },
    });
    assert.equal(put.statusCode, 400, `${encoding}: ${put.body}`);
    assert.equal(put.body, `BAD_REQUEST: body is not valid ${encoding}\n`);
    assert.equal((await h.request('GET', url)).statusCode, 404, encoding);
  }
});

test('realisations: the 2.8 layout and build-trace-v2, PUT/GET/HEAD', async (t) => {
  const h = await buildTestApp(t);
  const w = { ...basic(h.tokens.write), 'content-type': 'application/json' };
  const outPath = `${randomHashPart()}-out`;
  const id = `sha256:${'0123456789abcdef'.repeat(4)}!out`;
  const doc = JSON.stringify({ dependentRealisations: {}, id, outPath, signatures: [] });
  const url = `/main/realisations/${id}.doi`;
  assert.equal((await getAndHead(h, url)).statusCode, 404);
  assert.equal((await h.request('PUT', url, { body: doc, headers: w })).statusCode, 204);
  const got = await getAndHead(h, url);
  assert.equal(got.statusCode, 200);
  assert.equal(got.body, doc);
  assert.match(got.headers['content-type'] as string, /^application\/json\b/);

  const drv = `${randomHashPart()}-ca.drv`;
  const trace = JSON.stringify({ outPath, signatures: [{ keyName: 'k-1', sig: 'AAAA' }] });
  const traceUrl = `/main/build-trace-v2/${drv}/out.doi`;
  assert.equal((await getAndHead(h, traceUrl)).statusCode, 404);
  assert.equal((await h.request('PUT', traceUrl, { body: trace, headers: w })).statusCode, 204);
  const gotTrace = await getAndHead(h, traceUrl);
  assert.equal(gotTrace.statusCode, 200);
  assert.equal(gotTrace.body, trace);
  // The two layouts are separate namespaces.
  assert.equal((await h.request('GET', `/main/build-trace-v2/${drv}/dev.doi`)).statusCode, 404);

  const bad: [string, string][] = [
    [url, 'not json'],
    [url, JSON.stringify({ id, outPath: '/nix/store/x' })],
    [`/main/realisations/sha256:${'ab'.repeat(31)}!out.doi`, doc],
    [`/main/realisations/${id}.json`, doc],
    [`/main/build-trace-v2/${randomHashPart()}-notdrv/out.doi`, trace],
  ];
  for (const [u, body] of bad) {
    const res = await h.request('PUT', u, { body, headers: w });
    assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${u} ${body}: ${res.statusCode}`);
  }
  assert.equal((await h.request('GET', url)).body, doc, 'a refused PUT changes nothing');
});

test('debuginfo: PUT then HEAD 200; a second PUT does not overwrite', async (t) => {
  const h = await buildTestApp(t);
  const w = { ...basic(h.tokens.write), 'content-type': 'application/json' };
  const buildId = 'abcdef0123456789abcdef0123456789abcdef01';
  const url = `/main/debuginfo/${buildId}.debug`;
  assert.equal((await h.request('HEAD', url)).statusCode, 404);
  const first = JSON.stringify({
    archive: '../nar/first.nar.xz',
    member: 'lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug',
  });
  assert.equal((await h.request('PUT', url, { body: first, headers: w })).statusCode, 204);
  assert.equal((await h.request('HEAD', url)).statusCode, 200);
  const second = JSON.stringify({ archive: '../nar/second.nar.xz', member: 'lib/debug/.build-id/ab/x.debug' });
  const again = await h.request('PUT', url, { body: second, headers: w });
  assert.ok(again.statusCode >= 200 && again.statusCode < 300, `${again.statusCode}`);
  const got = await getAndHead(h, url);
  assert.equal(got.body, first);

  for (const bad of ['abcdef', 'ABCDEF0123456789ABCDEF0123456789ABCDEF01', `${buildId}00`]) {
    const res = await h.request('PUT', `/main/debuginfo/${bad}.debug`, { body: first, headers: w });
    assert.equal(res.statusCode, 400, `${bad}: ${res.body}`);
  }
});

test("<hash>.ls is served only once its path is committed, and it is narhub's own listing", async (t) => {
  const h = await buildTestApp(t);
  const w = basic(h.tokens.write);
  const contents = Buffer.from('just some data, 33 bytes long...\n');
  const script = Buffer.from('#!/bin/sh\necho hi\n');
  const path = makePath({
    compression: 'xz',
    tree: {
      type: 'directory',
      entries: {
        bin: { type: 'directory', entries: { hello: { type: 'regular', executable: true, contents: script } } },
        'data.txt': { type: 'regular', contents },
        empty: { type: 'regular', contents: Buffer.alloc(0) },
        link: { type: 'symlink', target: 'bin/hello' },
        share: { type: 'directory', entries: {} },
      },
    },
  });
  const url = `/main/${path.hashPart}.ls`;

  // Nix 2.8 PUTs the listing before the NAR; a client's listing is never what gets served.
  const bogus = JSON.stringify({ version: 1, root: { type: 'regular', size: 1, narOffset: 96 } });
  const put = await h.request('PUT', url, { body: bogus, headers: { ...w, 'content-type': 'application/json' } });
  assert.ok(put.statusCode >= 200 && put.statusCode < 300, `${put.statusCode} ${put.body}`);
  assert.equal((await getAndHead(h, url)).statusCode, 404, 'no listing before the path exists');

  assert.equal((await putNar(h, path, w)).statusCode, 204);
  assert.equal((await getAndHead(h, url)).statusCode, 404, 'no listing while the NAR is pending');
  assert.equal((await putNarinfo(h, path.hashPart, path.narinfo(), w)).statusCode, 204);

  const got = await getAndHead(h, url);
  assert.equal(got.statusCode, 200, got.body);
  assert.match(got.headers['content-type'] as string, /^application\/json\b/);
  type Node = {
    type: string;
    size?: number;
    executable?: boolean;
    narOffset?: number;
    target?: string;
    entries?: Record<string, Node>;
  };
  const listing = JSON.parse(got.body) as { version: number; root: Node };
  assert.equal(listing.version, 1);
  const root = listing.root;
  assert.equal(root.type, 'directory');
  assert.deepEqual(Object.keys(root.entries!), ['bin', 'data.txt', 'empty', 'link', 'share']);
  const hello = root.entries!.bin!.entries!.hello!;
  assert.equal(hello.type, 'regular');
  assert.equal(hello.executable, true);
  assert.equal(hello.size, script.length);
  const data = root.entries!['data.txt']!;
  assert.equal(data.size, contents.length);
  assert.equal(data.executable, undefined);
  assert.equal(root.entries!.empty!.size, 0);
  assert.deepEqual(root.entries!.link, { type: 'symlink', target: 'bin/hello' });
  assert.deepEqual(root.entries!.share, { type: 'directory', entries: {} });
  // narOffset points at the file's bytes inside the uncompressed NAR.
  for (const [node, bytes] of [
    [hello, script],
    [data, contents],
  ] as const) {
    assert.ok(path.nar.subarray(node.narOffset!, node.narOffset! + node.size!).equals(bytes), 'narOffset');
  }

  // A PUT after the commit does not replace narhub's listing either.
  await h.request('PUT', url, { body: bogus, headers: { ...w, 'content-type': 'application/json' } });
  assert.equal((await h.request('GET', url)).body, got.body);

  // Malformed listing uploads are refused.
  const other = randomHashPart();
  const bad = await h.request('PUT', `/main/${other}.ls`, {
    body: '{"version":2}',
    headers: { ...w, 'content-type': 'application/json' },
  });
  assert.equal(bad.statusCode, 400, bad.body);
});
