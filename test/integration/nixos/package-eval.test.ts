import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evalNixJson } from '../../helpers/nix-eval.js';
import { FAKE_STORE, committed, type Deps } from '../../helpers/package-files.js';

test('importNpmLock accepts what npm-lock.nix gives it, and refuses the call without npmRoot', async () => {
  const { value } = await evalNixJson<{
    deps: Deps;
    urls: Record<string, string | null>;
    withoutNpmRootEvaluates: boolean;
  }>('eval-npm-lock.nix');
  const { lock, pkg } = await committed();

  // nixpkgs asserts npmRoot != null for the local msgpackr-extract entry (issue 14, defect 1).
  assert.equal(value.withoutNpmRootEvaluates, false);
  assert.equal(lock['node_modules/msgpackr-extract']?.resolved, 'scripts/stubs/msgpackr-extract');

  const packages = value.deps.packageLock.packages;
  assert.deepEqual(Object.keys(packages).sort(), Object.keys(lock).sort());
  for (const [key, entry] of Object.entries(lock)) {
    if (key === '' || !entry.integrity) continue;
    // The registry's tarball URL, from the entry's name and version (npm's own layout).
    const name = entry.name ?? key.split('node_modules/').pop()!;
    const url = `https://registry.npmjs.org/${name}/-/${name.split('/').pop()}-${entry.version}.tgz`;
    assert.equal(value.urls[key], url, key);
    assert.equal(packages[key]?.resolved, `file:${FAKE_STORE}${url.split('/').pop()}`, key);
  }
  // The local stub: a store path, no longer a link into the source tree.
  assert.deepEqual(packages['node_modules/msgpackr-extract'], { resolved: `file:${FAKE_STORE}msgpackr-extract` });
  // package.json's dependencies name the same sources.
  for (const deps of [pkg.dependencies, pkg.devDependencies]) {
    for (const name of Object.keys(deps)) {
      assert.equal(
        value.deps.package.dependencies[name] ?? value.deps.package.devDependencies[name],
        packages[`node_modules/${name}`]?.resolved,
        name,
      );
    }
  }
  assert.equal(value.deps.name, `${pkg.name}-${pkg.version}-sources`);
});
