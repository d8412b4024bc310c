# NixOS VM test: a narhub hub (cache + build hub + local Redis open to the spokes) and three
# spoke machines (two through nix-daemon, one building in a chroot store of its own, in Nix's
# sandbox run by the spoke) build the checks of a small flake (./hub-demo); every output must
# then be substitutable from the cache by a client that trusts only the cache's key. Then Redis
# restarts under the running cache. Written for `nix flake check`; never run on the machines
# narhub is developed on, which have no KVM.
{ lib, pkgs, ... }:

let
  system = pkgs.stdenv.hostPlatform.system;
  demo = (import ./hub-demo/flake.nix).outputs { self = null; };
  # Output paths of the demo's checks, computed here without building anything.
  expected = lib.mapAttrs (_: d: builtins.unsafeDiscardStringContext d.outPath) demo.checks.${system};

  # Test-only secrets. Real ones never go through the Nix store.
  redisPassword = "narhubvmtestredis0123456789abcdef";

  spoke =
    {
      features,
      store ? null,
    }:
    {
      environment.etc."narhub-spoke/redis-url" = {
        text = "redis://:${redisPassword}@hub:6379/0";
        mode = "0400";
      };
      nix.settings.system-features = features;
      services.narhub-spoke = {
        enable = true;
        hub = "http://hub:8080";
        # Written by the test script once the hub made the token.
        tokenFile = "/var/lib/narhub-spoke-token";
        redisUrlFile = "/etc/narhub-spoke/redis-url";
        maxJobs = 2;
        inherit store;
      };
      virtualisation.memorySize = 1536;
    };
in
{
  name = "narhub-hub-spokes";

  nodes = {
    hub = {
      environment.etc."narhub/redis-password" = {
        text = redisPassword;
        mode = "0400";
      };
      services.narhub = {
        enable = true;
        settings = {
          listen = "0.0.0.0:8080";
          hub.enable = true;
        };
        openFirewall = true;
        hub.redis = {
          port = 6379;
          bind = "0.0.0.0";
          passwordFile = "/etc/narhub/redis-password";
          openFirewall = true;
        };
      };
      environment.systemPackages = [ pkgs.curl ];
      virtualisation.memorySize = 2048;
    };

    spoke1 = spoke {
      features = [
        "nixos-test"
        "benchmark"
        "big-parallel"
      ];
    };
    spoke2 = spoke {
      features = [
        "nixos-test"
        "benchmark"
        "big-parallel"
        "narhub-vm-feature"
      ];
    };

    # Builds in /var/lib/narhub-spoke/store with Nix's sandbox run by the spoke itself: what
    # the unit relaxes for a chroot store must be enough (issue 14, defect 4).
    spoke3 = spoke {
      features = [ "narhub-vm-chroot-store" ];
      store = "/var/lib/narhub-spoke/store";
    };

    client = {
      nix.settings.substituters = lib.mkForce [ ];
    };
  };

  testScript = ''
    import json

    expected = json.loads('${builtins.toJSON expected}')
    redis_cli = "redis-cli -s /run/redis-narhub/redis.sock -a ${redisPassword} --no-auth-warning"

    start_all()
    hub.wait_for_unit("redis-narhub.service")
    hub.wait_for_unit("narhub.service")
    hub.wait_for_open_port(8080)
    hub.succeed(f"{redis_cli} config get maxmemory-policy | grep -x noeviction")
    hub.succeed(f"{redis_cli} config get appendonly | grep -x yes")

    with subtest("spokes join with a write token and the Redis password from credentials"):
        token = hub.succeed("narhub-admin token create --cache main --perm write --name spokes").strip()
        for spoke in [spoke1, spoke2, spoke3]:
            spoke.wait_for_unit("multi-user.target")
            spoke.succeed(f"umask 077; echo '{token}' > /var/lib/narhub-spoke-token")
            spoke.succeed("systemctl reset-failed narhub-spoke.service || true")
            spoke.systemctl("restart narhub-spoke.service")
            spoke.wait_for_unit("narhub-spoke.service")
            unit = spoke.succeed("systemctl cat narhub-spoke.service")
            assert "${redisPassword}" not in unit, "the Redis password is in the spoke's unit"
            assert token not in unit, "the token is in the spoke's unit"
        hub.wait_until_succeeds(f"test $({redis_cli} --scan --pattern 'narhub:spoke:*' | wc -l) -eq 3", timeout=120)
        # A switch waits at most this long for a stopping spoke.
        assert spoke1.succeed("systemctl show -P TimeoutStopUSec narhub-spoke.service").strip() == "1min"

    with subtest("the hub evaluates the flake and the spokes build its checks"):
        hub.succeed("mkdir -p /srv/demo && cp ${./hub-demo/flake.nix} /srv/demo/flake.nix && chmod -R a+rX /srv/demo")
        hub.succeed(
            "narhub-admin project create demo --flake path:/srv/demo"
            " --systems ${system} --attrs checks --cache main"
        )
        evaluation = json.loads(hub.succeed("narhub-admin eval demo --wait --timeout 900 --json", timeout=960))
        assert evaluation["status"] == "succeeded", evaluation
        for name, out in expected.items():
            hub.succeed(f"curl -fsS http://127.0.0.1:8080/main/{out[11:43]}.narinfo")
        # Only spoke2 offers the feature `featured` needs.
        spoke2.succeed(f"nix-store --check-validity {expected['featured']}")
        spoke1.fail(f"nix-store --check-validity {expected['featured']}")
        # Built in spoke3's chroot store, by the sandbox the spoke ran itself.
        spoke3.succeed(f"nix-store --store /var/lib/narhub-spoke/store --check-validity {expected['chrooted']}")
        spoke3.fail(f"nix-store --check-validity {expected['chrooted']}")

    with subtest("every output substitutes from the cache, trusting only its key"):
        key = json.loads(hub.succeed("narhub-admin cache info main --json"))["publicKeys"][0]
        for name, out in expected.items():
            client.fail(f"nix-store --check-validity {out}")
            client.succeed(
                f"nix-store --realise {out} --option substituters http://hub:8080/main"
                f" --option trusted-public-keys '{key}'"
            )
        client.succeed(f"grep -q ' chain {expected['base']}' {expected['chain']}")
        client.succeed(f"grep -x featured {expected['featured']}")
        client.succeed(f"grep -x chrooted {expected['chrooted']}")

    with subtest("the cache keeps serving while Redis restarts, and the hub carries on after"):
        pid = hub.succeed("systemctl show -P MainPID narhub.service").strip()
        hub.succeed("systemctl stop redis-narhub.service")
        hub.succeed("curl -fsS http://127.0.0.1:8080/main/nix-cache-info")
        hub.succeed("systemctl start redis-narhub.service")
        hub.wait_for_unit("redis-narhub.service")
        assert hub.succeed("systemctl show -P MainPID narhub.service").strip() == pid, "narhub restarted with Redis"
        evaluation = json.loads(hub.succeed("narhub-admin eval demo --wait --timeout 600 --json", timeout=660))
        assert evaluation["status"] == "succeeded", evaluation
  '';
}
