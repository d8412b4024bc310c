# nixpkgs' importNpmLock (the stand-in of nixpkgs-stand-ins.nix) applied to what
# nixos/npm-lock.nix gives it, as nixos/package.nix does. Builtins only: it needs no nixpkgs.
#
#   nix-instantiate --eval --strict --json test/integration/nixos/eval-npm-lock.nix
let
  standIns = import ./nixpkgs-stand-ins.nix { };
  args = import ../../../nixos/npm-lock.nix { root = ../../..; };
  # Forces every entry, as building the sources derivation would.
  evaluate =
    a:
    let
      deps = standIns.importNpmLock a;
      result = {
        inherit (deps) name package packageLock;
      };
    in
    builtins.deepSeq result result;
in
{
  deps = evaluate args;
  # The registry URLs npm-lock.nix wrote into the lock, by entry.
  urls = builtins.mapAttrs (_: entry: entry.resolved or null) args.packageLock.packages;
  # The same call without npmRoot, which nixpkgs refuses (what nixos/package.nix once did).
  withoutNpmRootEvaluates = (builtins.tryEval (evaluate (removeAttrs args [ "npmRoot" ]))).success;
}
