# Evaluates nixos/package.nix as the flake's callPackage would, with nixpkgs' lib (from
# $NIXPKGS_LIB) and the stand-ins of nixpkgs-stand-ins.nix for buildNpmPackage, importNpmLock,
# srcOnly, nodejs_24 and makeWrapper, and returns what the derivation would be built from.
#
#   nix-instantiate --eval --strict --json test/integration/nixos/eval-package.nix \
#     --argstr nixpkgsLib "$NIXPKGS_LIB"
#
# lib.fileset needs builtins.readFileType (Nix 2.14 and later). Debian's Nix 2.8 lacks it, so
# there the two fileset functions the package calls are stood in: they check that every file
# exists under the root and return a store-path-like string. On a newer Nix, lib's own run.
{ nixpkgsLib }:

let
  nixpkgsLibrary = import (nixpkgsLib + "/lib");
  hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
  fileset = {
    unions =
      paths:
      assert builtins.all builtins.pathExists paths;
      paths;
    toSource =
      { root, fileset }:
      assert builtins.all (p: hasPrefix "${toString root}/" (toString p)) fileset;
      "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-source";
  };
  lib =
    if builtins ? readFileType then
      nixpkgsLibrary
    else
      nixpkgsLibrary // { fileset = nixpkgsLibrary.fileset // fileset; };

  standIns = import ./nixpkgs-stand-ins.nix { };
  narhub = import ../../../nixos/package.nix {
    inherit lib;
    inherit (standIns)
      buildNpmPackage
      importNpmLock
      makeWrapper
      nodejs_24
      srcOnly
      ;
  };
  names = map (d: d.name);
in
{
  inherit (narhub)
    name
    pname
    version
    npmBuildScript
    npmInstallFlags
    npmRebuildFlags
    env
    preBuild
    postBuild
    postInstall
    doInstallCheck
    installCheckPhase
    meta
    ;
  src = toString narhub.src;
  nodejs = narhub.nodejs.name;
  passthruNodejs = narhub.passthru.nodejs.name;
  nativeBuildInputs = names narhub.nativeBuildInputs;
  buildInputs = names narhub.buildInputs;
  npmDeps = {
    inherit (narhub.npmDeps) name package packageLock;
  };
}
