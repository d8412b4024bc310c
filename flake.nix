{
  description = "narhub: a self-hosted Nix binary cache and build hub";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      linux = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # The package and the module are Linux-only; a development shell works on macOS too.
      forSystems = systems: f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forSystems linux (pkgs: rec {
        narhub = pkgs.callPackage ./nixos/package.nix { };
        default = narhub;
      });

      overlays.default = final: _prev: {
        narhub = final.callPackage ./nixos/package.nix { };
      };

      # `services.narhub` and `services.narhub-spoke`, with this flake's package as the default.
      nixosModules.default =
        { pkgs, lib, ... }:
        {
          imports = [ ./nixos/module.nix ];
          services.narhub.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          services.narhub-spoke.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          services.narhub-push.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      nixosModules.narhub = self.nixosModules.default;

      devShells = forSystems (linux ++ [ "aarch64-darwin" ]) (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.nodejs_24
            pkgs.nix
            pkgs.redis
            pkgs.nginx
            pkgs.wrk
            pkgs.zstd
            pkgs.xz
            pkgs.bzip2
            pkgs.gzip
            pkgs.curl
            # node-gyp, for the native addons `npm ci` compiles
            pkgs.python3
            pkgs.pkg-config
          ];
          # node-gyp takes Node's headers from here instead of downloading them.
          npm_config_nodedir = pkgs.nodejs_24;
          shellHook = ''
            echo "narhub: npm ci && npm test"
          '';
        };
      });

      checks = lib.genAttrs linux (
        system:
        import ./nixos/checks.nix {
          inherit self;
          pkgs = nixpkgs.legacyPackages.${system};
        }
      );
    };
}
