// /metrics after real traffic (nix copy, reads, a rejected upload, GC, a key rotation), checked by
// promtool; a separate metrics listener; and the request log: ids, caches, store paths, no token.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { makeTempDir } from '../helpers/tmp.js';
import { promtool, seriesValue as value } from '../helpers/prometheus.js';
import { uploadClosure } from '../helpers/scenario.js';
import { runCliOk, startServer } from '../helpers/server.js';

test('/metrics after real traffic passes promtool and counts reads, uploads, bytes, GC and re-signing', async (t) => {
  const { server, closure, writeToken } = await uploadClosure(t, 'metrics');
  const base = `${server.url}/main`;
  const hash = (p: string) => p.slice(11, 43);
  for (const p of closure.paths) assert.equal((await fetch(`${base}/${hash(p)}.narinfo`)).status, 200);
  assert.equal((await fetch(`${base}/${'0'.repeat(32)}.narinfo`)).status, 404);
  const refused = await fetch(`${base}/${'1'.repeat(32)}.narinfo`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${writeToken}` },
    body: 'StorePath: /nix/store/11111111111111111111111111111111-x\n',
  });
  assert.equal(refused.status, 400);
  await runCliOk(['cache', 'update', 'main', '--retention', '1d'], { dataDir: server.dataDir });
  const gc = await fetch(`${server.url}/api/v1/gc`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: '{}',
  });
  assert.equal(gc.status, 200);
  await runCliOk(['key', 'rotate', 'main'], { dataDir: server.dataDir });

  let text = '';
  for (let i = 0; i < 100; i++) {
    text = await (await fetch(`${server.url}/metrics`)).text();
    if (value(text, 'narhub_key_rewrite_done_paths{cache="main",key="main-2",state="active"}') === 3) break;
    await sleep(100);
  }
  promtool(text);
  // nix copy asked for each narinfo (HEAD or GET) before uploading: misses then; our GETs: hits.
  assert.ok(value(text, 'narhub_narinfo_hits_total{cache="main"}')! >= 3, text);
  assert.ok(value(text, 'narhub_narinfo_misses_total{cache="main"}')! >= 1);
  assert.equal(value(text, 'narhub_uploads_total{cache="main",outcome="committed",reason=""}'), 3);
  assert.equal(
    value(text, 'narhub_uploads_total{cache="main",outcome="rejected",reason="NARINFO_PARSE_ERROR"}') ??
      value(text, 'narhub_uploads_total{cache="main",outcome="rejected",reason="NARINFO_INVALID"}'),
    1,
  );
  assert.equal(value(text, 'narhub_cache_paths{cache="main"}'), 3);
  assert.ok(value(text, 'narhub_cache_bytes{cache="main"}')! > 0);
  // serve runs GC at start too.
  assert.ok(value(text, 'narhub_gc_runs{cache="main"}')! >= 2);
  assert.equal(value(text, 'narhub_gc_removed_paths{cache="main"}'), 0);
  assert.equal(value(text, 'narhub_key_rewrite_total_paths{cache="main",key="main-2",state="active"}'), 3);
  assert.ok(value(text, 'narhub_http_received_bytes_total')! > 1000, 'the NAR uploads arrived');
  assert.ok(value(text, 'narhub_http_sent_bytes_total')! > 1000);
  assert.match(
    text,
    /narhub_http_request_duration_seconds_bucket\{method="PUT",route="\/:cache\/nar\/:file",status="20\d",le="[^"]+"\}/,
  );
  // On loopback any caller may scrape, a write token included (off loopback it takes an admin
  // token over every cache: test/integration/http/metrics.test.ts).
  assert.equal(
    (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${writeToken}` } })).status,
    200,
    'loopback is open',
  );
});

test('metricsListen serves /metrics alone on its own address, without a token', async (t) => {
  const dir = await makeTempDir(t, 'narhub-metrics-');
  const config = join(dir, 'config.json');
  await writeFile(config, JSON.stringify({ metricsListen: '127.0.0.1:0', storage: { type: 'local' } }));
  const server = await startServer(t, { args: ['--config', config] });
  const line = server
    .stdout()
    .split('\n')
    .find((l) => l.includes('"metrics listening"'));
  assert.ok(line, server.stdout());
  const url = (JSON.parse(line) as { url: string }).url;
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  promtool(await res.text());
  assert.equal((await fetch(`${url}/main/nix-cache-info`)).status, 404);
});

test('every request log line has the request id, its cache and store path; no line has a token', async (t) => {
  const dir = await makeTempDir(t, 'narhub-logs-');
  const config = join(dir, 'config.json');
  await writeFile(config, JSON.stringify({ logRequests: true, logLevel: 'debug', storage: { type: 'local' } }));
  const server = await startServer(t, { args: ['--config', config] });
  const { closure, writeToken, uploader } = await uploadClosure(t, 'logs', { server });
  const hash = closure.paths[0]!.slice(11, 43);
  const bad = 'nh_thisTokenIsNotValidButMustNotBeLoggedEither0000';
  await (
    await fetch(`${server.url}/main/${hash}.narinfo`, { headers: { authorization: `Bearer ${writeToken}` } })
  ).text();
  await (
    await fetch(`${server.url}/main/${hash}.narinfo`, {
      headers: { authorization: `Basic ${Buffer.from(`x:${bad}`).toString('base64')}` },
    })
  ).text();
  const created = (await (
    await fetch(`${server.url}/api/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ cache: 'main', permission: 'read' }),
    })
  ).json()) as { token: string };
  await (
    await fetch(`${server.url}/api/v1/caches/main/paths/${hash}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${bad}` },
      body: 'x',
    })
  ).text();
  void uploader;
  await server.stop();

  const output = server.stdout() + server.stderr();
  // The first start prints the admin token once, on purpose (README, "Serve"); no log line has one.
  const logLines = output.split('\n').filter((l) => l.startsWith('{'));
  for (const secret of [writeToken, bad, server.adminToken, created.token])
    for (const l of logLines) assert.equal(l.includes(secret), false, `a token appears in the log: ${l}`);
  assert.equal(output.split(server.adminToken).length - 1, 1, 'the admin token is printed once, at first start');
  const requestLines = output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.req !== undefined || l.res !== undefined || l.reqId !== undefined);
  assert.ok(requestLines.length > 20, `${requestLines.length} request log lines`);
  for (const l of requestLines) assert.equal(typeof l.reqId, 'string', JSON.stringify(l));
  const narinfoLines = requestLines.filter(
    (l) => JSON.stringify(l).includes(`${hash}.narinfo`) || l.storePath === hash,
  );
  const completed = requestLines.filter((l) => l.msg === 'request completed' && l.cache === 'main');
  assert.ok(completed.length > 0);
  // Every line of a request on a cache route carries the cache, and a narinfo's its store path.
  const byId = new Map<string, Record<string, unknown>[]>();
  for (const l of requestLines) byId.set(l.reqId as string, [...(byId.get(l.reqId as string) ?? []), l]);
  for (const lines of byId.values()) {
    const url = (lines.find((l) => l.req !== undefined)?.req as { url?: string } | undefined)?.url ?? '';
    const m = /^\/(?:api\/v1\/caches\/)?(main)\/(?:paths\/)?([0-9a-z]{32})(\.narinfo)?/.exec(url);
    if (!m) continue;
    for (const l of lines.filter((x) => x.req === undefined)) {
      assert.equal(l.cache, 'main', JSON.stringify(l));
      assert.equal(l.storePath, m[2], JSON.stringify(l));
    }
  }
  assert.ok(narinfoLines.some((l) => l.storePath === hash));
});
