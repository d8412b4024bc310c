# narhub, built from this checkout with nixpkgs' buildNpmPackage on Node.js 24.
#
# Dependencies come from package-lock.json through importNpmLock (one fetchurl per package,
# checked against the lock's own `integrity`), so there is no npmDepsHash to keep up to date.
# nixos/npm-lock.nix gives importNpmLock its arguments (registry URLs rebuilt from name and
# version, and `npmRoot` for the local msgpackr-extract stub).
#
# Install scripts do not run (npm install/rebuild --ignore-scripts). The three native addons
# package.json's `allowScripts` allows are then compiled from source, against Node 24's own
# headers: better-sqlite3 (SQLite amalgamation), zstd-napi (bundled zstd) and lzma-native
# (bundled xz); their prebuilt binaries are never used. node-gyp finds Python through
# buildNpmPackage, which puts `nodejs.python` on the build's PATH. msgpackr-extract is a local
# stub (see scripts/stubs/msgpackr-extract) that the output leaves out: msgpackr falls back to
# JavaScript.
#
# What of this was evaluated and what was never built: README.md, section NixOS.
{
  lib,
  buildNpmPackage,
  importNpmLock,
  makeWrapper,
  nodejs_24,
  srcOnly,
}:

let
  package = lib.importJSON ../package.json;

  nativeAddons = [
    "better-sqlite3"
    "zstd-napi"
    "lzma-native"
  ];

  # V8 flags narhub runs with (src/cli/node-flags.ts says why; a unit test keeps the lists equal).
  nodeFlags = [ "--initial-old-space-size=64" ];
in
buildNpmPackage {
  pname = "narhub";
  inherit (package) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../package.json
      ../package-lock.json
      ../tsconfig.json
      ../README.md
      ../src
      ../migrations
      ../scripts
      ../test
      ../bench
    ];
  };

  nodejs = nodejs_24;
  nativeBuildInputs = [ makeWrapper ];
  npmDeps = importNpmLock (import ./npm-lock.nix { root = ../.; });
  npmConfigHook = importNpmLock.npmConfigHook;

  # Nothing runs install scripts on its own; the addons are built below, one by one.
  npmInstallFlags = [ "--ignore-scripts" ];
  npmRebuildFlags = [ "--ignore-scripts" ];

  env = {
    # prebuild-install and node-gyp-build skip their downloads and prebuilt binaries.
    npm_config_build_from_source = "true";
  };

  preBuild = ''
    # Node 24's headers: better-sqlite3 uses V8's ABI, which changes with every major version.
    export npm_config_nodedir=${srcOnly nodejs_24}
    rm -rf node_modules/lzma-native/prebuilds
    npm rebuild --foreground-scripts ${lib.escapeShellArgs nativeAddons}
  '';

  # `npm run build` (tsc) is the default build. Then drop the addons' build intermediates,
  # which name build-time paths (Node's sources, Python, the compiler) and would drag them into
  # the run-time closure; only the compiled `.node` files are needed.
  postBuild = ''
    for addon in ${lib.escapeShellArgs nativeAddons}; do
      build=node_modules/$addon/build
      test -n "$(find "$build/Release" -maxdepth 1 -name '*.node')" || { echo "$addon was not built" >&2; exit 1; }
      find "$build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
      find "$build/Release" -mindepth 1 -maxdepth 1 ! -name '*.node' -exec rm -rf {} +
    done
    rm -f node_modules/better-sqlite3/build/Release/test_extension.node
    # gyp writes the makefiles of lzma-native's node-addon-api dependency next to the addon.
    rm -rf node_modules/lzma-native/node-addon-api
  '';

  # npm's bin wrapper runs `node main.js`: made again with narhub's V8 flags before the script.
  postInstall = ''
    rm -rf $out/lib/node_modules/narhub/node_modules/msgpackr-extract \
      $out/lib/node_modules/narhub/node_modules/@msgpackr-extract
    makeWrapper ${lib.getExe nodejs_24} $out/bin/narhub \
      --add-flags ${lib.escapeShellArg (lib.concatStringsSep " " nodeFlags)} \
      --add-flags $out/lib/node_modules/narhub/dist/src/cli/main.js
  '';

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    echo '{ "caches": [ { "name": "main" } ] }' > config.json
    test "$($out/bin/narhub check-config config.json)" = ok
    ${lib.concatMapStrings (flag: "grep -q -- ${lib.escapeShellArg flag} $out/bin/narhub\n") nodeFlags}
    # Every native addon loads on this Node.
    cd $out/lib/node_modules/narhub
    ${lib.getExe nodejs_24} -e '
      const Database = require("better-sqlite3"); new Database(":memory:").close();
      require("zstd-napi"); require("lzma-native");
    '
    cd - > /dev/null
    runHook postInstallCheck
  '';

  passthru = {
    nodejs = nodejs_24;
  };

  meta = {
    description = "Self-hosted Nix binary cache and build hub";
    license = lib.licenses.mit;
    mainProgram = "narhub";
    # lzma-native's build of xz uses BSD sed on macOS, which nixpkgs' darwin stdenv lacks.
    platforms = lib.platforms.linux;
  };
}
