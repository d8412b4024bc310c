# The flake's checks: the package (its build runs `check-config` and loads every native addon),
# `npm test` in a VM (the suites drive the real Nix client and build into /nix/store, which a
# build sandbox cannot offer), and the NixOS VM tests of the module (cache, hub and spokes, push).
{ pkgs, self }:

let
  inherit (pkgs) lib;
  narhub = self.packages.${pkgs.stdenv.hostPlatform.system}.default;

  # Each VM test sees the module (disabled unless a node enables it) with this flake's package.
  runTest =
    test:
    pkgs.testers.runNixOSTest {
      imports = [ test ];
      defaults.imports = [ self.nixosModules.default ];
    };

  # The build tree after `npm run build`: sources, dist/ and node_modules with the dev
  # dependencies the tests use (the package prunes them).
  buildTree = narhub.overrideAttrs (_: {
    pname = "narhub-build-tree";
    doInstallCheck = false;
    installPhase = ''
      runHook preInstall
      mkdir -p $out
      cp -r . $out/
      runHook postInstall
    '';
    postInstall = "";
  });
in
{
  package = narhub;
  npm-test = runTest (import ./tests/npm-test.nix { inherit buildTree; });
  vm-cache = runTest ./tests/cache.nix;
  vm-hub-spokes = runTest ./tests/hub-spokes.nix;
  vm-push = runTest ./tests/push.nix;
}
