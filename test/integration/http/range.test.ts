// Range requests on NARs: what Nix uses to resume a broken download (docs/protocol.md, Resuming: Range).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildTestApp, makePath, upload } from '../../helpers/build-app.js';

test('single byte ranges give 206 with the right Content-Range and bytes', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'xz' });
  await upload(h, path);
  const size = path.file.length;
  assert.ok(size > 40, `need a file of some size, got ${size}`);
  const url = `/main/nar/${path.fileName}`;

  const cases: { range: string; start: number; end: number }[] = [
    { range: 'bytes=0-0', start: 0, end: 0 },
    { range: 'bytes=10-', start: 10, end: size - 1 },
    { range: 'bytes=-5', start: size - 5, end: size - 1 },
    { range: 'bytes=7-20', start: 7, end: 20 },
    { range: `bytes=3-${size + 1000}`, start: 3, end: size - 1 },
  ];
  for (const c of cases) {
    const res = await h.request('GET', url, { headers: { range: c.range } });
    assert.equal(res.statusCode, 206, `${c.range}: ${res.body}`);
    assert.equal(res.headers['content-range'], `bytes ${c.start}-${c.end}/${size}`, c.range);
    assert.equal(Number(res.headers['content-length']), c.end - c.start + 1, c.range);
    assert.ok(res.rawPayload.equals(path.file.subarray(c.start, c.end + 1)), `${c.range}: bytes`);
    assert.equal(res.headers['accept-ranges'], 'bytes');

    const head = await h.request('HEAD', url, { headers: { range: c.range } });
    assert.equal(head.statusCode, 206, `HEAD ${c.range}`);
    assert.equal(head.headers['content-range'], res.headers['content-range']);
    assert.equal(head.headers['content-length'], res.headers['content-length']);
    assert.equal(head.body, '');
  }
});

test('a range past the end is 416 with Content-Range: bytes */SIZE', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath();
  await upload(h, path);
  const size = path.file.length;
  for (const range of ['bytes=999999-', `bytes=${size}-`]) {
    const res = await h.request('GET', `/main/nar/${path.fileName}`, { headers: { range } });
    assert.equal(res.statusCode, 416, `${range}: ${res.body}`);
    assert.equal(res.headers['content-range'], `bytes */${size}`);
    assert.match(res.body, /^RANGE_NOT_SATISFIABLE: [^\n]+\n$/);
  }
});

test('several ranges, or a non-bytes unit, are answered with the whole file (200)', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath({ compression: 'zstd' });
  await upload(h, path);
  for (const range of ['bytes=0-1,5-9', 'items=0-3']) {
    const res = await h.request('GET', `/main/nar/${path.fileName}`, { headers: { range } });
    assert.equal(res.statusCode, 200, range);
    assert.equal(res.headers['content-range'], undefined);
    assert.ok(res.rawPayload.equals(path.file), `${range}: whole body`);
    assert.equal(Number(res.headers['content-length']), path.file.length);
  }
});

test('a range on a pending NAR is still 404', async (t) => {
  const h = await buildTestApp(t);
  const path = makePath();
  const put = await h.request('PUT', `/main/nar/${path.fileName}`, {
    body: path.file,
    headers: { authorization: `Bearer ${h.tokens.write}` },
  });
  assert.equal(put.statusCode, 204, put.body);
  const res = await h.request('GET', `/main/nar/${path.fileName}`, { headers: { range: 'bytes=0-0' } });
  assert.equal(res.statusCode, 404);
});
