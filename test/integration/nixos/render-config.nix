# nixos/config.nix, the module's config writer (builtins only), applied to the inputs recorded in
# test/fixtures/nixos/module-config-inputs.json: what the module writes for each scenario,
# without nixpkgs. module-configs.test.ts compares it with module-configs.json.
#
#   nix-instantiate --eval --strict --json test/integration/nixos/render-config.nix
let
  root = ../../..;
  readJSON = path: builtins.fromJSON (builtins.readFile path);
  schema = readJSON (root + "/nixos/config-schema.json");
  inputs = readJSON (root + "/test/fixtures/nixos/module-config-inputs.json");
in
builtins.mapAttrs (_: input: import (root + "/nixos/config.nix") ({ inherit schema; } // input)) inputs
