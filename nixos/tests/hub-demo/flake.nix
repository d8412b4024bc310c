{
  # The flake the hub VM test builds: no inputs (the VMs have no network), /bin/sh builders
  # using shell builtins only (a NixOS build sandbox has nothing but /bin/sh). The test computes
  # the same derivations on the host to know which outputs to expect in the cache.
  description = "narhub VM test project";

  outputs =
    { self }:
    let
      forSystem =
        system:
        let
          mk =
            name: attrs: script:
            derivation (
              {
                inherit name system;
                builder = "/bin/sh";
                args = [
                  "-c"
                  script
                ];
              }
              // attrs
            );
          base = mk "narhub-vm-base" { } ''echo base > "$out"'';
        in
        {
          inherit base;
          # Needs `base` at build time and keeps a reference to it.
          chain = mk "narhub-vm-chain" { inherit base; } ''
            read -r line < "$base"
            echo "$line chain $base" > "$out"
          '';
          # Only a spoke offering this feature may build it.
          featured = mk "narhub-vm-featured" {
            requiredSystemFeatures = [ "narhub-vm-feature" ];
          } ''echo featured > "$out"'';
          # Only the spoke with a chroot store offers this: it builds in Nix's sandbox itself.
          chrooted = mk "narhub-vm-chrooted" {
            requiredSystemFeatures = [ "narhub-vm-chroot-store" ];
          } ''echo chrooted > "$out"'';
          wide-1 = mk "narhub-vm-wide-1" { } ''echo 1 > "$out"'';
          wide-2 = mk "narhub-vm-wide-2" { } ''echo 2 > "$out"'';
          wide-3 = mk "narhub-vm-wide-3" { } ''echo 3 > "$out"'';
        };
    in
    {
      checks = {
        x86_64-linux = forSystem "x86_64-linux";
        aarch64-linux = forSystem "aarch64-linux";
      };
    };
}
