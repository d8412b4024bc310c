// nixos/package.nix against nixpkgs' contracts, with the stand-ins of nixpkgs-stand-ins.nix for
// importNpmLock, buildNpmPackage, srcOnly, nodejs_24 and makeWrapper (they keep nixpkgs'
// argument checks and assertions; nothing is built or fetched). The lock half needs no nixpkgs
// and runs everywhere; the whole package needs nixpkgs' lib (NIXPKGS_LIB).
//
// What this cannot show, since these machines cannot hold nixpkgs and have no KVM: that npm
// installs the rewritten lock offline, that node-gyp compiles the three addons against Node
// 24's headers, and that the install check passes. Only `nix build .#narhub` shows that.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NIXPKGS_LIB, evalNixJson, needsNixpkgsLib } from '../../helpers/nix-eval.js';
import { repoRoot } from '../../helpers/repo.js';

interface LockEntry {
  name?: string;
  version?: string;
  resolved?: string;
  integrity?: string;
  link?: boolean;
}
interface PackageJson {
  name: string;
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  scripts: Record<string, string>;
  bin: Record<string, string>;
}
interface Deps {
  name: string;
  package: PackageJson;
  packageLock: { packages: Record<string, LockEntry> };
}

const FAKE_STORE = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-';

async function committed(): Promise<{ lock: Record<string, LockEntry>; pkg: PackageJson }> {
  const root = repoRoot();
  const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as PackageJson;
  return { lock: lock.packages, pkg };
}

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

test('nixos/package.nix evaluates against buildNpmPackage, importNpmLock and srcOnly', {
  skip: needsNixpkgsLib,
}, async () => {
  const { value } = await evalNixJson<{
    name: string;
    src: string;
    nodejs: string;
    passthruNodejs: string;
    nativeBuildInputs: string[];
    buildInputs: string[];
    npmBuildScript: string;
    npmInstallFlags: string[];
    npmRebuildFlags: string[];
    preBuild: string;
    postInstall: string;
    installCheckPhase: string;
    doInstallCheck: boolean;
    meta: { mainProgram: string; platforms: string[] };
    npmDeps: Deps;
  }>('eval-package.nix', { nixpkgsLib: NIXPKGS_LIB! });
  const { pkg } = await committed();

  assert.equal(value.name, `narhub-${pkg.version}`);
  assert.match(value.src, /^\/nix\/store\/\S+-source$/);
  // Node 24 runs the build; node-gyp finds Python through nodejs.python; the hook is
  // importNpmLock's, which installs from the rewritten lock.
  assert.equal(value.nodejs, 'nodejs-24.11.1');
  assert.equal(value.passthruNodejs, 'nodejs-24.11.1');
  for (const input of ['nodejs-24.11.1', 'python3-3.13.9', 'npm-config-hook-import-npm-lock', 'make-wrapper-hook'])
    assert.ok(value.nativeBuildInputs.includes(input), `${input} in ${value.nativeBuildInputs.join(' ')}`);
  assert.ok(!value.nativeBuildInputs.includes('npm-config-hook'), "npmHooks' own config hook is replaced");
  assert.equal(value.npmDeps.name, `narhub-${pkg.version}-sources`);
  assert.equal(
    value.npmDeps.packageLock.packages['node_modules/msgpackr-extract']?.resolved,
    `file:${FAKE_STORE}msgpackr-extract`,
  );
  // npmBuildHook runs `npm run build`; npmInstallHook wraps package.json's bin.
  assert.equal(value.npmBuildScript, 'build');
  assert.ok(pkg.scripts.build, 'package.json has a build script');
  assert.deepEqual(pkg.bin, { narhub: 'dist/src/cli/main.js' });
  assert.deepEqual(value.npmInstallFlags, ['--ignore-scripts']);
  assert.deepEqual(value.npmRebuildFlags, ['--ignore-scripts']);
  // The addons compile against Node 24's headers (srcOnly of nodejs_24), not the hook's Node.
  assert.match(value.preBuild, new RegExp(`npm_config_nodedir=${FAKE_STORE}nodejs-24\\.11\\.1-source\\n`));
  assert.match(value.preBuild, /npm rebuild --foreground-scripts better-sqlite3 zstd-napi lzma-native/);
  assert.match(value.postInstall, /makeWrapper \S+nodejs-24\.11\.1\/bin\/node \$out\/bin\/narhub/);
  assert.equal(value.doInstallCheck, true);
  assert.match(value.installCheckPhase, /narhub check-config config\.json\)" = ok/);
  assert.equal(value.meta.mainProgram, 'narhub');
  assert.ok(value.meta.platforms.includes('x86_64-linux') && value.meta.platforms.includes('aarch64-linux'));
  assert.ok(!value.meta.platforms.some((p) => p.endsWith('-darwin')));
});
