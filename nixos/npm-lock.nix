# The arguments nixos/package.nix gives nixpkgs' importNpmLock, from package.json and
# package-lock.json. Builtins only, so that a test can evaluate them without nixpkgs
# (test/integration/nixos/npm-lock.test.ts).
#
# - The lock carries no `resolved` URLs (npm's omit-lockfile-registry-resolved): every registry
#   entry gets its tarball URL rebuilt from its name and version, and importNpmLock fetches it
#   with the lock's own `integrity` as the hash.
# - msgpackr-extract is a local stub (scripts/stubs/msgpackr-extract): a `link` entry whose
#   `resolved` is a path relative to the repository, with no URL scheme. importNpmLock resolves
#   such an entry against `npmRoot`, and refuses to evaluate without it.
{ root }:

let
  package = builtins.fromJSON (builtins.readFile (root + "/package.json"));
  packageLock = builtins.fromJSON (builtins.readFile (root + "/package-lock.json"));

  registry = "https://registry.npmjs.org";
  last = list: builtins.elemAt list (builtins.length list - 1);
  # `node_modules/a/node_modules/@scope/b` -> `@scope/b`; an alias entry names its package.
  entryName = key: entry: entry.name or (last (builtins.split "node_modules/" key));
  tarballUrl =
    key: entry:
    let
      name = entryName key entry;
    in
    "${registry}/${name}/-/${baseNameOf name}-${entry.version}.tgz";
  withUrl =
    key: entry:
    if key == "" || entry ? resolved || (entry.link or false) || !(entry ? integrity) then
      entry
    else
      entry // { resolved = tarballUrl key entry; };
in
{
  inherit package;
  packageLock = packageLock // {
    packages = builtins.mapAttrs withUrl packageLock.packages;
  };
  npmRoot = root;
}
