// The hub's in-process upload of `.drv` closures: against the real cache service and derivations
// instantiated by the real Nix, with sources (a file and a directory with a symlink) and a
// source that refers to another store path. What the cache then serves must be what Nix has.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { uploadDerivationClosure } from '../../../src/hub/derivation-upload.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { createNixEnv } from '../../helpers/nix.js';

test('uploadDerivationClosure puts every .drv and source of the closure into the cache, as Nix has them', async (t) => {
  const nix = await createNixEnv(t);
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
  // Everything is there: a second call uploads nothing, and says at once that every .drv is ready.
  const again: string[] = [];
  assert.equal(await uploadDerivationClosure(service, cache, [top], { ...limits, onReady: (p) => again.push(p) }), 0);
  assert.deepEqual(
    again.sort(),
    closure.filter((p) => p.endsWith('.drv')),
  );
});
