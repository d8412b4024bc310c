// GC against a running server with the real Nix client: a pinned closure still substitutes after
// GC removed everything else; uploads (nix copy and native) running during GC never fail for a
// reference GC removed under them, and no visible narinfo ever lacks a reference.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import Sqlite from 'better-sqlite3';
import { makePath, nativeUploadBody, type TestPath } from '../helpers/build-app.js';
import { buildClosure, createNixEnv } from '../helpers/nix.js';
import { lines, uploadClosure } from '../helpers/scenario.js';
import { createToken, runCli, runCliOk, startServer, type RunningServer } from '../helpers/server.js';

const DAY = 86_400_000;

function openDb(server: RunningServer) {
  return new Sqlite(join(server.dataDir, 'narhub.sqlite'), { timeout: 5000 });
}

/** Paths of `main` whose references are not all in `main`: must always be none. */
function dangling(db: Sqlite.Database): string[] {
  return (
    db
      .prepare(`SELECT p.hash_part || ' -> ' || r.reference AS d FROM store_paths p
        JOIN path_references r ON r.path_id = p.id
        WHERE NOT EXISTS (SELECT 1 FROM store_paths q
          WHERE q.cache_id = p.cache_id AND q.hash_part = substr(r.reference, 1, 32))`)
      .all() as { d: string }[]
  ).map((r) => r.d);
}

async function gcOverApi(
  server: RunningServer,
  body: object = {},
): Promise<{ caches: { pathsRemoved: number; paths: { storePath: string }[] }[] }> {
  const res = await fetch(`${server.url}/api/v1/gc`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as { caches: { pathsRemoved: number; paths: { storePath: string }[] }[] };
}

test('after GC, real Nix substitutes the pinned closure; the removed one is gone and nothing dangles', async (t) => {
  const kept = await uploadClosure(t, 'gc-kept');
  const { server } = kept;
  const gone = await uploadClosure(t, 'gc-gone', { server });
  const dataDir = server.dataDir;
  // Policy and pin from the CLI on the data directory, while the server runs: no restart.
  await runCliOk(['cache', 'update', 'main', '--retention', '1d'], { dataDir });
  await runCliOk(['pin', 'add', 'main', kept.closure.top, '--name', 'release', '--expires', '30d'], { dataDir });
  const pins = JSON.parse((await runCliOk(['pin', 'list', 'main', '--json'], { dataDir })).stdout) as {
    name: string;
    storePath: string;
  }[];
  assert.deepEqual(
    pins.map((p) => [p.name, p.storePath]),
    [['release', kept.closure.top]],
  );

  // A dry run first (it writes the server's recorded reads), then every path is made 2 days old.
  await runCliOk(['gc', '--server', server.url, '--token', server.adminToken, '--dry-run']);
  const db = openDb(server);
  t.after(() => db.close());
  db.prepare('UPDATE store_paths SET accessed_at = ?').run(Date.now() - 2 * DAY);

  const dry = JSON.parse(
    (await runCliOk(['gc', '--server', server.url, '--token', server.adminToken, '--dry-run', '--json'])).stdout,
  ) as { dryRun: boolean; caches: { paths: { storePath: string }[] }[] };
  assert.equal(dry.dryRun, true);
  assert.deepEqual(dry.caches[0]!.paths.map((p) => p.storePath).sort(), [...gone.closure.paths].sort());
  const run = await runCliOk(['gc', '--server', server.url, '--token', server.adminToken]);
  assert.match(run.stdout, /main: removed 3 paths/);
  assert.deepEqual(dangling(db), []);

  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', kept.cacheUrl, '--to', store, kept.closure.top]);
  const got = await client.run('nix', ['path-info', '--store', store, '-r', kept.closure.top]);
  assert.deepEqual(lines(got.stdout), [...kept.closure.paths].sort());
  const missing = await client.tryRun('nix', [
    'copy',
    '--from',
    kept.cacheUrl,
    '--to',
    client.freshPath('s2'),
    gone.closure.top,
  ]);
  assert.notEqual(missing.code, 0, 'a removed path is not substitutable');
});

/** narhub's native upload of a synthetic path, over HTTP. */
async function nativeUpload(server: RunningServer, token: string, p: TestPath): Promise<Response> {
  return fetch(`${server.url}/api/v1/caches/main/paths/${p.hashPart}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body: nativeUploadBody(p),
  });
}

test('after GC over the API, a narinfo just served and removed is 404 with its NAR, not from memory', async (t) => {
  const server = await startServer(t);
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const paths = [makePath({ name: 'memo-a' }), makePath({ name: 'memo-b' })];
  for (const p of paths) assert.equal((await nativeUpload(server, token, p)).status, 201);
  const narinfoOf = (p: TestPath) => fetch(`${server.url}/main/${p.hashPart}.narinfo`);
  // Each narinfo is read (and so held in the server's narinfo memo) just before GC.
  const urls: string[] = [];
  for (const p of paths) {
    const res = await narinfoOf(p);
    assert.equal(res.status, 200);
    urls.push(/^URL: (.*)$/m.exec(await res.text())![1]!);
  }
  // A quota of 0 bytes: GC removes every unpinned path, however recently read.
  await runCliOk(['cache', 'update', 'main', '--quota', '0'], { dataDir: server.dataDir });
  // Within the memo's lifetime (1 s) of those reads.
  const run = await gcOverApi(server);
  assert.equal(run.caches[0]!.pathsRemoved, 2);
  for (const [i, p] of paths.entries()) {
    const narinfo = await narinfoOf(p);
    await narinfo.arrayBuffer();
    assert.equal(narinfo.status, 404, `${p.basename}'s narinfo after GC removed it`);
    const nar = await fetch(`${server.url}/main/${urls[i]}`);
    await nar.arrayBuffer();
    assert.equal(nar.status, 404, `${p.basename}'s NAR after GC removed it`);
  }
});

test('uploads during GC: none fails for a reference GC removed under it, and nothing ever dangles', async (t) => {
  const server = await startServer(t);
  const { token } = await createToken(server.dataDir, 'main', 'write');
  await runCliOk(['cache', 'update', 'main', '--retention', '1d'], { dataDir: server.dataDir });
  // 60 old paths (chains of 3), made 2 days old: GC's work while the uploads run.
  const old: TestPath[] = [];
  for (let i = 0; i < 20; i++) {
    const leaf = makePath({ name: `old-${i}-leaf` });
    const mid = makePath({ name: `old-${i}-mid`, references: [leaf.basename] });
    const top = makePath({ name: `old-${i}-top`, references: [mid.basename] });
    for (const p of [leaf, mid, top]) assert.equal((await nativeUpload(server, token, p)).status, 201);
    old.push(leaf, mid, top);
  }
  const db = openDb(server);
  t.after(() => db.close());
  // Chain by chain, the loop below makes old paths that nobody read since their upload 2 days
  // old, so that GC removes some in every run while the uploads go on.
  const ageChain = db.prepare(
    'UPDATE store_paths SET accessed_at = ?, created_at = ? WHERE name GLOB ? AND accessed_at = created_at',
  );

  // The uploads: real `nix copy`s of fresh closures, and native uploads of new paths referring
  // to old ones (each first reads the reference's narinfo, as a client checking it would).
  const uploader = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  const closures = await Promise.all([0, 1, 2].map((i) => buildClosure(uploader, `during-gc-${i}`)));
  let uploading = true;
  const outcomes = { created: 0, referenceGone: 0 };
  const native = (async () => {
    for (let i = 0; i < 20; i++) {
      // The top of the chain GC is about to see as old, or has just seen.
      const ref = old[3 * i + 2]!;
      await sleep(40);
      const seen = await fetch(`${server.url}/main/${ref.hashPart}.narinfo`);
      await seen.arrayBuffer();
      if (seen.status === 404) {
        outcomes.referenceGone++;
        continue;
      }
      const p = makePath({ name: `new-${i}`, references: [ref.basename] });
      const res = await nativeUpload(server, token, p);
      assert.equal(res.status, 201, `upload of a path referring to ${ref.basename}: ${await res.text()}`);
      outcomes.created++;
    }
  })();
  // One Nix env per copy: Nix 2.8's client cache (binary-cache-v6.sqlite) fails under concurrent writers.
  const copiers = await Promise.all(
    closures.map(() => createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] })),
  );
  const copies = Promise.all(
    closures.map((c, i) =>
      copiers[i]!.run('nix', ['copy', '--to', `${server.url}/main?compression=zstd`, c.top]).then(() => undefined),
    ),
  );
  const uploads = Promise.all([native, copies]).finally(() => {
    uploading = false;
  });
  let runs = 0;
  let removed = 0;
  while (uploading) {
    const then = Date.now() - 2 * DAY;
    if (runs < 20) ageChain.run(then, then, `old-${runs}-*`);
    const run = await gcOverApi(server);
    runs++;
    removed += run.caches[0]!.pathsRemoved;
    assert.deepEqual(dangling(db), [], `after GC run ${runs}`);
    await sleep(20);
  }
  await uploads;
  t.diagnostic(`${runs} GC runs removed ${removed} paths; native uploads: ${JSON.stringify(outcomes)}`);
  assert.ok(runs >= 2, `GC ran ${runs} times during the uploads`);
  assert.ok(removed > 0, 'GC removed old paths meanwhile');
  assert.ok(outcomes.created > 0, JSON.stringify(outcomes));
  // Every old chain a new path refers to is still whole; the others went.
  assert.equal(removed + 3 * outcomes.created, 60, `${removed} removed, ${outcomes.created} referred to`);
  assert.deepEqual(dangling(db), []);

  // Every closure uploaded during GC substitutes with the real Nix client.
  const client = await createNixEnv(t, { trustedPublicKeys: [server.publicKey] });
  const store = client.freshPath('client-store');
  await client.run('nix', ['copy', '--from', `${server.url}/main`, '--to', store, ...closures.map((c) => c.top)]);
  const got = await client.run('nix', ['path-info', '--store', store, '-r', ...closures.map((c) => c.top)]);
  assert.deepEqual(lines(got.stdout), closures.flatMap((c) => c.paths).sort());
});

test('narhub gc on a data directory refuses while narhub serve runs on it; after a stop or kill it runs', async (t) => {
  const server = await startServer(t);
  const dataDir = server.dataDir;
  const refused = await runCli(['gc'], { dataDir });
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /narhub serve \(pid \d+, http:\/\/127\.0\.0\.1:\d+\) runs on this data directory/);
  assert.match(refused.stderr, /narhub gc --server URL/);
  await runCliOk(['gc', '--dry-run'], { dataDir });
  await runCliOk(['gc', '--server', server.url, '--token', server.adminToken]);
  assert.equal(await server.stop(), 0);
  await runCliOk(['gc'], { dataDir });

  // A server killed outright leaves its lease behind: a dead process's lease does not count.
  const killed = await startServer(t, { dataDir });
  await killed.stop('SIGKILL');
  await runCliOk(['gc'], { dataDir });
});
