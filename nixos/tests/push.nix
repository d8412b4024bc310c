# NixOS VM test of `services.narhub-push`: what two machines produce reaches a narhub cache
# without anyone running `nix copy`, one through Nix's post-build-hook (narhub queue-push, then
# push-daemon), the other with watch-store; a client trusting only the cache's key substitutes
# both, and what is queued while the push unit is stopped goes up once it runs again.
{ lib, ... }:

let
  # The cache node of cache.nix and its throwaway key pair.
  cacheNode = import ./cache-node.nix;

  pushesWith = mode: {
    nix.settings.experimental-features = [ "nix-command" ];
    nix.settings.substituters = lib.mkForce [ ];
    services.narhub-push = {
      enable = true;
      inherit mode;
      cacheUrl = "http://cache:8080/main";
      # Written by the test script once the cache has issued a token.
      tokenFile = "/var/lib/secrets/narhub-push-token";
    };
  };

  # A derivation with no input but the sandbox's /bin/sh.
  derivationOf =
    name:
    ''derivation { name = "${name}"; system = builtins.currentSystem; builder = "/bin/sh"; ''
    + ''args = [ "-c" "echo ${name} > $out" ]; }'';
in
{
  name = "narhub-push";

  nodes = {
    cache = cacheNode.node;

    builder = pushesWith "post-build-hook";
    watcher = pushesWith "watch-store";

    client = {
      nix.settings = {
        substituters = lib.mkForce [ "http://cache:8080/main" ];
        trusted-public-keys = lib.mkForce [ cacheNode.publicKey ];
      };
    };
  };

  testScript = ''
    def narinfo(path):
        return f"curl -fsS http://127.0.0.1:8080/main/$(basename {path} | cut -c1-32).narinfo"

    start_all()
    cache.wait_for_unit("narhub.service")
    token = cache.succeed("narhub-admin token create --cache main --perm write").strip()

    with subtest("the push units start once their token exists, as root (watch-store) and narhub-push"):
        for machine in [builder, watcher]:
            machine.wait_for_unit("multi-user.target")
            machine.succeed(
                "mkdir -p /var/lib/secrets && "
                + f"(umask 077 && printf '%s' '{token}' > /var/lib/secrets/narhub-push-token)"
            )
            machine.systemctl("restart narhub-push.service")
            machine.wait_for_unit("narhub-push.service")
        assert builder.succeed("systemctl show -P User narhub-push.service").strip() == "narhub-push"
        assert watcher.succeed("systemctl show -P User narhub-push.service").strip() == "root"
        unit = builder.succeed("systemctl cat narhub-push.service")
        assert token not in unit, "the token is in the unit"

    with subtest("a build on the post-build-hook machine reaches the cache"):
        built = builder.succeed("nix-build --no-out-link -E '${derivationOf "narhub-vm-built"}'").strip()
        cache.wait_until_succeeds(narinfo(built), timeout=120)

    with subtest("a path added on the watch-store machine reaches the cache"):
        added = watcher.succeed("echo watched > /tmp/watched && nix-store --add /tmp/watched").strip()
        cache.wait_until_succeeds(narinfo(added), timeout=120)

    with subtest("what is built while push-daemon is stopped waits in the queue, and goes up once it runs"):
        builder.systemctl("stop narhub-push.service")
        later = builder.succeed("nix-build --no-out-link -E '${derivationOf "narhub-vm-later"}'").strip()
        builder.succeed("ls /var/lib/narhub-push/queue/*.paths")
        cache.fail(narinfo(later))
        builder.systemctl("start narhub-push.service")
        cache.wait_until_succeeds(narinfo(later), timeout=120)

    with subtest("a client trusting only the cache's key substitutes what both machines pushed"):
        client.wait_for_unit("multi-user.target")
        client.succeed(f"nix-store --realise {built} {added} {later}")
        client.succeed(f"grep -x narhub-vm-built {built}")
  '';
}
