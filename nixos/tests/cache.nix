# NixOS VM test: a narhub cache, a machine that uploads to it with the stock `nix copy --to`,
# and a client that substitutes from it while trusting nothing but the cache's key (plus a
# client that trusts another key, which must refuse the cache's paths).
{ lib, pkgs, ... }:

let
  # The cache node and its throwaway key pair.
  cacheNode = import ./cache-node.nix;
  inherit (cacheNode) secretKey publicKey;

  # A two-path closure: the payload refers to its dependency.
  dependency = pkgs.writeText "narhub-vm-dependency" "a dependency\n";
  payload = pkgs.runCommand "narhub-vm-payload" { } ''
    mkdir $out
    echo "narhub payload" > $out/hello
    ln -s ${dependency} $out/dependency
  '';

  # Valid on the uploader too, never uploaded with a token.
  unauthorised = pkgs.writeText "narhub-vm-unauthorised" "no token\n";

  substituterOnly = keys: {
    nix.settings = {
      substituters = lib.mkForce [ "http://cache:8080/main" ];
      trusted-public-keys = lib.mkForce keys;
    };
  };
in
{
  name = "narhub-cache";

  nodes = {
    cache = cacheNode.node;

    uploader = {
      # Valid in this machine's store, so `nix copy` can upload it.
      system.extraDependencies = [
        payload
        unauthorised
      ];
      nix.settings.experimental-features = [ "nix-command" ];
      nix.settings.substituters = lib.mkForce [ ];
    };

    client = substituterOnly [ publicKey ];

    # Trusts cache.nixos.org's key only.
    stranger = substituterOnly [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
  };

  testScript = ''
    start_all()

    with subtest("the unit is ready only once narhub listens (Type=notify)"):
        cache.wait_for_unit("narhub.service")
        assert cache.succeed("systemctl show -P Type narhub.service").strip() == "notify"
        # No wait for the port: an active notify unit already answers.
        cache.succeed("curl -fsS http://127.0.0.1:8080/main/nix-cache-info | grep -x 'StoreDir: /nix/store'")

    with subtest("the signing key reaches the service as a credential only"):
        unit = cache.succeed("systemctl cat narhub.service")
        assert "LoadCredential=caches.main.signingKeyFile:/etc/narhub/main.secret" in unit, unit
        secret_body = "${lib.last (lib.splitString ":" secretKey)}"
        assert secret_body not in unit, "the secret key is in the unit"
        config_file = cache.succeed("systemctl show -P ExecStart narhub.service").split("--config ")[1].split()[0]
        config = cache.succeed(f"cat {config_file}")
        assert secret_body not in config, "the secret key is in the config"
        assert "/run/credentials/narhub.service/caches.main.signingKeyFile" in config, config
        print(cache.succeed("systemd-analyze security narhub.service | tail -n 1"))

    with subtest("upload with nix copy --to and a write token"):
        token = cache.succeed("narhub-admin token create --cache main --perm write").strip()
        uploader.wait_for_unit("multi-user.target")
        uploader.succeed(f"echo 'machine cache login narhub password {token}' > /root/netrc")
        uploader.succeed(
            "nix copy --option netrc-file /root/netrc --to 'http://cache:8080/main?compression=zstd' ${payload}"
        )
        narinfo = cache.succeed(
            "curl -fsS http://127.0.0.1:8080/main/$(basename ${payload} | cut -c1-32).narinfo"
        )
        assert "Sig: narhub-vm-test-1:" in narinfo, narinfo

    with subtest("an upload without a token is refused"):
        uploader.fail("nix copy --to 'http://cache:8080/main' ${unauthorised}")
        cache.fail("curl -fsS http://127.0.0.1:8080/main/$(basename ${unauthorised} | cut -c1-32).narinfo")

    with subtest("a client trusting only the cache's key substitutes the closure"):
        client.wait_for_unit("multi-user.target")
        # The VMs see the host's store files; what counts is the store database.
        client.fail("nix-store --check-validity ${payload}")
        client.succeed("nix-store --realise ${payload}")
        client.succeed("grep -x 'narhub payload' ${payload}/hello")
        client.succeed("grep -x 'a dependency' ${dependency}")
        client.succeed("nix-store --check-validity ${payload} ${dependency}")
        client.succeed("nix-store --verify-path ${payload}")

    with subtest("a client trusting another key refuses the cache's paths"):
        stranger.wait_for_unit("multi-user.target")
        stranger.fail("nix-store --realise ${payload}")

    with subtest("paths survive a restart"):
        cache.systemctl("restart narhub.service")
        cache.wait_for_unit("narhub.service")
        cache.succeed("curl -fsS http://127.0.0.1:8080/main/$(basename ${payload} | cut -c1-32).narinfo")

    with subtest("narhub-admin runs as the service user with the service's credentials"):
        # A transient unit (systemd-run) as narhub, with the signing key as its own credential.
        cache.succeed("narhub-admin cache info main --json | grep -q narhub-vm-test-1")
        cache.succeed("narhub-admin token list --json")
        owner = cache.succeed("stat -c %U /var/lib/narhub/narhub.sqlite").strip()
        assert owner == "narhub", owner
  '';
}
