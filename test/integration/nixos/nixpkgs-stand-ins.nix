# Stand-ins for the nixpkgs functions and packages nixos/package.nix calls, written here (not
# copied) from nixpkgs' contracts: the manual's sections on buildNpmPackage and importNpmLock,
# and the arguments, assertions and attribute accesses of pkgs/build-support/node/
# {import-npm-lock,build-npm-package}, pkgs/build-support/src-only and pkgs/build-support/
# fetchurl, read in nixpkgs' source (the versions of nixos-25.11 and of master agree on all
# that is checked here). Builtins only, so that the lock half evaluates without nixpkgs.
#
# They build nothing and fetch nothing. Each one checks its arguments as nixpkgs does, fails
# where nixpkgs fails, and returns what it was given, for the tests to inspect:
#
# - importNpmLock: an entry whose `resolved` has no URL scheme is a path relative to `npmRoot`,
#   which must then be given (nixpkgs asserts `npmRoot != null`); `http(s)://` entries are
#   fetched with `fetchurl { url; hash = integrity; }`; `git` ones with fetchGit (not expected
#   here, so refused); any other scheme is an error. Every dependency and devDependency of
#   package.json must have a `node_modules/NAME` entry with a `resolved` after that. The result
#   has `npmConfigHook` beside being callable, as nixpkgs' attribute set with `__functor` has.
# - fetchurl: `url` and an SRI `hash` are required.
# - buildNpmPackage: `pname` and `version` (or `name`), `src`, and `npmDeps` (else
#   `npmDepsHash` for fetchNpmDeps); `nativeBuildInputs` gets nodejs, the three hooks (a custom
#   `npmConfigHook` replaces nixpkgs' own) and `nodejs.python`, so `nodejs` must have `python`.
# - srcOnly: a derivation (its `drvAttrs`) or attributes with `name` or `pname` and `version`,
#   and a `src` to unpack.
{ }:

let
  storeDir = "/nix/store";
  fakeHash = "0123456789abcdfghijklmnpqrsvwxyz";
  derivation' =
    name: attrs:
    attrs
    // {
      type = "derivation";
      inherit name;
      outPath = "${storeDir}/${fakeHash}-${name}";
      drvAttrs = attrs // {
        inherit name;
      };
    };
  hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;

  fetchurl =
    { url, hash, ... }@args:
    assert builtins.match "https?://.+" url != null;
    assert builtins.match "(sha1|sha256|sha512)-[A-Za-z0-9+/]+=*" hash != null;
    derivation' (baseNameOf url) args;

  # One lock entry's source, as importNpmLock finds it (null: nothing to fetch).
  moduleSource =
    npmRoot: key: entry:
    if !(entry ? resolved) || entry.resolved == null then
      null
    else
      let
        url = builtins.match "(.+)://(.+)" entry.resolved;
        scheme = builtins.elemAt url 0;
      in
      if url == null then
        # A path relative to npmRoot: without npmRoot, nixpkgs' assertion fails here.
        assert npmRoot != null;
        let
          path = npmRoot + "/${entry.resolved}";
        in
        assert builtins.pathExists (path + "/package.json");
        # nixpkgs interpolates the path, which copies it to the store; its name is enough here.
        { outPath = "${storeDir}/${fakeHash}-${baseNameOf entry.resolved}"; }
      else if scheme == "http" || scheme == "https" then
        fetchurl {
          url = entry.resolved;
          hash = entry.integrity;
        }
      else if hasPrefix "git" entry.resolved then
        throw "stand-in importNpmLock: ${key} is a git dependency, which narhub's lock has none of"
      else
        throw "Unsupported URL scheme: ${scheme}";

  importNpmLock' =
    {
      npmRoot ? null,
      package ? builtins.fromJSON (builtins.readFile (npmRoot + "/package.json")),
      packageLock ? builtins.fromJSON (builtins.readFile (npmRoot + "/package-lock.json")),
      pname ? package.name or "unknown",
      version ? package.version or "0.0.0",
    }:
    let
      packages = builtins.mapAttrs (
        key: entry:
        let
          source = moduleSource npmRoot key entry;
        in
        removeAttrs entry [
          "link"
          "funding"
        ]
        // (if source == null then { } else { resolved = "file:${source.outPath}"; })
      ) packageLock.packages;
      lockedSource = name: packages."node_modules/${name}".resolved;
      package' =
        package
        // builtins.mapAttrs (_: deps: builtins.mapAttrs (name: _: lockedSource name) deps) (
          builtins.intersectAttrs {
            dependencies = null;
            devDependencies = null;
          } package
        );
    in
    derivation' "${pname}-${version}-sources" {
      package = package';
      packageLock = packageLock // {
        inherit packages;
      };
    };

  npmHooks = {
    npmConfigHook = derivation' "npm-config-hook" { };
    npmBuildHook = derivation' "npm-build-hook" { };
    npmInstallHook = derivation' "npm-install-hook" { };
  };

  python3 = derivation' "python3-3.13.9" { };
  nodejs_24 = derivation' "nodejs-24.11.1" {
    pname = "nodejs";
    version = "24.11.1";
    src = fetchurl {
      url = "https://nodejs.org/dist/v24.11.1/node-v24.11.1.tar.xz";
      hash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    };
    python = python3;
    meta.mainProgram = "node";
  };
in
{
  inherit fetchurl nodejs_24 python3;

  importNpmLock = {
    __functor = _: importNpmLock';
    npmConfigHook = derivation' "npm-config-hook-import-npm-lock" { };
  };

  buildNpmPackage =
    args:
    let
      nodejs = args.nodejs or (throw "stand-in buildNpmPackage: the test passes nodejs explicitly");
      name = args.name or "${args.pname}-${args.version}";
    in
    assert args ? src;
    assert args ? npmDeps || args ? npmDepsHash;
    derivation' name (
      args
      // {
        nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ [
          nodejs
          (args.npmConfigHook or npmHooks.npmConfigHook)
          (args.npmBuildHook or npmHooks.npmBuildHook)
          (args.npmInstallHook or npmHooks.npmInstallHook)
          nodejs.python
        ];
        buildInputs = (args.buildInputs or [ ]) ++ [ nodejs ];
        npmBuildScript = args.npmBuildScript or "build";
      }
    );

  srcOnly =
    attrs:
    let
      args = attrs.drvAttrs or attrs;
      name = args.name or "${args.pname}-${args.version}";
    in
    assert args ? src;
    derivation' "${name}-source" { inherit (args) src; };

  makeWrapper = derivation' "make-wrapper-hook" { };
}
