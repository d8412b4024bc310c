import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evalNixJson, nixpkgsLib } from '../../helpers/nix-eval.js';
import { FAKE_STORE, committed, type Deps } from '../../helpers/package-files.js';

test('nixos/package.nix evaluates against buildNpmPackage, importNpmLock and srcOnly', async () => {
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
  }>('eval-package.nix', { nixpkgsLib: nixpkgsLib() });
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
