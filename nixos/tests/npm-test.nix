# `npm test` (every suite: unit, integration, e2e) in a NixOS VM. The suites drive the real Nix
# client and build small derivations into /nix/store, start redis-server and an S3 server, so
# they need a machine, not a build sandbox. The nixpkgs-lib suite (module and package
# evaluations) runs too, with NIXPKGS_LIB pointing at this nixpkgs.
{ buildTree }:
{ pkgs, ... }:

let
  node = buildTree.passthru.nodejs;
in
{
  name = "narhub-npm-test";

  nodes.machine = {
    virtualisation = {
      memorySize = 4096;
      cores = 2;
      diskSize = 8192;
    };
    nix.settings.substituters = pkgs.lib.mkForce [ ];
    environment.systemPackages = [
      node
      pkgs.redis
      pkgs.xz
      pkgs.bzip2
      pkgs.zstd
      pkgs.gzip
      pkgs.curl
    ];
  };

  testScript = ''
    machine.wait_for_unit("multi-user.target")
    machine.succeed("cp -r ${buildTree} /root/narhub && chmod -R u+w /root/narhub")
    machine.succeed(
        "cd /root/narhub && NIXPKGS_LIB=${pkgs.path} NARHUB_TEST_CONCURRENCY=1 "
        + "node scripts/run-tests.mjs >&2 && node scripts/run-tests.mjs nixpkgs-lib >&2",
        timeout=3600,
    )
  '';
}
