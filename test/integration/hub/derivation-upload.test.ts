// The hub's in-process upload of `.drv` closures: against the real cache service and derivations
// instantiated by the real Nix, with sources (a file and a directory with a symlink) and a
// source that refers to another store path. What the cache then serves must be what Nix has.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { uploadDerivationClosure } from '../../../src/hub/derivation-upload.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { layeredGraphNix } from '../../helpers/layered-graph.js';
import { createNixEnv } from '../../helpers/nix.js';

/** A cache service on a fresh data dir (local disk, no fsync) with one cache, `proj`. */
async function cacheFixture(t: TestContext) {
  const dataDir = mkdtempSync(join(tmpdir(), 'narhub-drv-upload-'));
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dataDir, 'store'), fsync: false });
  const service = createCacheService({ db, store, keysDir: join(dataDir, 'keys') });
  const { cache } = await service.registry.create('proj', { private: false, priority: 40 });
  t.after(async () => {
    await store.close();
    db.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return { service, cache };
}

test('uploadDerivationClosure puts every .drv and source of the closure into the cache, as Nix has them', async (t) => {
  const nix = await createNixEnv(t);
  const { service, cache } = await cacheFixture(t);

  const nonce = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const srcDir = join(nix.workDir, 'src');
  mkdirSync(srcDir);
  writeFileSync(join(srcDir, 'file'), `file ${nonce}\n`);
  symlinkSync('file', join(srcDir, 'link'));
  await writeFile(
    join(nix.workDir, 'graph.nix'),
    `let
  script = builtins.toFile "script-${nonce}.sh" "echo hi > $out";
  dir = builtins.path { path = ${srcDir}; name = "srcdir-${nonce}"; };
  refers = builtins.toFile "refers-${nonce}" "uses \${script}";
  dep = derivation { name = "dep-${nonce}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ script ]; };
in derivation {
  name = "top-${nonce}";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ "-c" "echo \${dep} \${dir} \${refers} > $out" ];
}
`,
  );
  const top = (await nix.run('nix-instantiate', [join(nix.workDir, 'graph.nix')])).stdout.trim();
  const closure = (await nix.run('nix-store', ['-qR', top])).stdout.trim().split('\n').sort();
  assert.equal(closure.length, 5, closure.join('\n')); // top.drv, dep.drv, script, srcdir, refers
  const limits = { deadline: Date.now() + 120_000, env: nix.env, maxSize: 1 << 30 };

  // Each .drv is announced once it is in the cache, and never before the paths it refers to.
  const ready: string[] = [];
  const onReady = (drvPath: string) => {
    const hashPart = drvPath.slice('/nix/store/'.length, '/nix/store/'.length + 32);
    const info = parseNarInfo(service.narinfo(cache, hashPart)!);
    assert.deepEqual(
      service.missingPaths(
        cache,
        info.references.map((r) => `/nix/store/${r}`),
      ),
      [],
      `${drvPath} announced before its references`,
    );
    ready.push(drvPath);
  };
  assert.equal(await uploadDerivationClosure(service, cache, [top], { ...limits, onReady }), closure.length);
  assert.deepEqual(
    ready.sort(),
    closure.filter((p) => p.endsWith('.drv')),
  );
  assert.deepEqual(service.missingPaths(cache, closure), []);
  for (const path of closure) {
    const hashPart = path.slice('/nix/store/'.length, '/nix/store/'.length + 32);
    const info = parseNarInfo(service.narinfo(cache, hashPart)!);
    const want = JSON.parse(
      execFileSync(
        'nix',
        [
          '--extra-experimental-features',
          'nix-command',
          'path-info',
          ...(path.endsWith('.drv') ? ['--derivation'] : []),
          '--json',
          path,
        ],
        { env: nix.env, encoding: 'utf8' },
      ),
    )[0];
    assert.equal(info.narSize, want.narSize, path);
    assert.deepEqual(info.references.map((r) => `/nix/store/${r}`).sort(), [...want.references].sort(), path);
    if (path.endsWith('.drv')) assert.equal(info.ca, want.ca, `${path}: text content address`);
    assert.ok(
      info.sigs.some((s) => s.startsWith('proj-1:')),
      'signed by the cache',
    );
  }
  // Everything is there: a second call uploads nothing, and says at once that the root is ready.
  const again: string[] = [];
  assert.equal(await uploadDerivationClosure(service, cache, [top], { ...limits, onReady: (p) => again.push(p) }), 0);
  assert.deepEqual(again, [top]);
});

const BATCHED =
  'uploadDerivationClosure asks the cache about at most 1,000 paths a query, each path once, ' +
  'and never below what it has';

test(BATCHED, {
  timeout: 300_000,
}, async (t) => {
  const nix = await createNixEnv(t);
  const { service, cache } = await cacheFixture(t);
  // The cache service, except that it remembers every missing-paths query.
  const queries: string[][] = [];
  const counting = Object.assign(Object.create(service) as typeof service, {
    missingPaths: (c: typeof cache, paths: string[]) => {
      queries.push(paths);
      return service.missingPaths(c, paths);
    },
  });

  // 1,100 × 3 derivations: the top layer is more than one query's worth.
  const width = 1_100;
  await writeFile(join(nix.workDir, 'graph.nix'), layeredGraphNix(width, 3));
  const tops = (
    await nix.run('nix-instantiate', [
      join(nix.workDir, 'graph.nix'),
      '--argstr',
      'nonce',
      randomBytes(6).toString('hex'),
    ])
  ).stdout
    .trim()
    .split('\n');
  assert.equal(tops.length, width);
  const closure = (await nix.run('nix-store', ['-qR', ...tops])).stdout.trim().split('\n');
  const layer = (n: number) => closure.filter((p) => new RegExp(`-bench-${n}-\\d+\\.drv$`).test(p));
  assert.equal(layer(1).length, width);
  const limits = { deadline: Date.now() + 240_000, env: nix.env, maxSize: 1 << 30 };

  // The middle layer first: with its closure, the bottom layer. Each .drv is heard of as soon as
  // it is in, while the others still upload (so its build can start meanwhile).
  let stillMissingAtFirstReady: number | undefined;
  const onReady = () => {
    stillMissingAtFirstReady ??= service.missingPaths(cache, layer(1)).length;
  };
  assert.equal(await uploadDerivationClosure(counting, cache, layer(1), { ...limits, onReady }), 2 * width);
  assert.ok(stillMissingAtFirstReady! > width / 2, `${stillMissingAtFirstReady} of ${width} still to upload`);
  assert.ok(
    queries.every((q) => q.length <= 1_000),
    `query sizes ${queries.map((q) => q.length)}`,
  );
  assert.deepEqual(queries.flat().sort(), [...layer(0), ...layer(1)].sort(), 'each path asked about once');

  // Then the top: the walk stops at the middle layer the cache has, and never asks about the bottom.
  queries.length = 0;
  const ready: string[] = [];
  const uploaded = await uploadDerivationClosure(counting, cache, tops, { ...limits, onReady: (p) => ready.push(p) });
  assert.equal(uploaded, width);
  assert.deepEqual(ready.sort(), [...tops].sort());
  assert.deepEqual(
    queries.map((q) => q.length).sort((a, b) => a - b),
    [100, 100, 1_000, 1_000],
  );
  assert.deepEqual(queries.flat().sort(), [...tops, ...layer(1)].sort());
  assert.deepEqual(service.missingPaths(cache, closure), []);
});
