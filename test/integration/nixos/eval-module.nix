# Evaluates nixos/module.nix with the real module system (lib.evalModules from nixpkgs' lib),
# next to stub declarations of the few NixOS options the module sets, and returns what the
# module produced as JSON. Used by module-eval.test.ts:
#
#   nix-instantiate --eval --strict --json test/integration/nixos/eval-module.nix \
#     --argstr nixpkgsLib "$NIXPKGS_LIB" --argstr scenario full --argstr secretsDir /tmp/x
#
# No derivation is built and nothing is written to the store: the `pkgs` functions the module
# calls are stubs that return store-path-like strings and keep their inputs for inspection.
{
  nixpkgsLib,
  scenario,
  secretsDir ? "/var/lib/secrets",
  dataDir ? "/srv/narhub",
}:

let
  lib = import (nixpkgsLib + "/lib");
  inherit (lib) mkOption types;

  fakeHash = "0123456789abcdfghijklmnpqrsvwxyz";
  fakePath = name: "/nix/store/${fakeHash}-${name}";
  fakeDrv =
    name: attrs:
    attrs
    // {
      inherit name;
      outPath = fakePath name;
    };

  pkgs = {
    stdenv.hostPlatform.system = "x86_64-linux";
    git = fakePath "git-2.51.0";
    openssh = fakePath "openssh-10.2p1";
    coreutils = fakePath "coreutils-9.8";
    writeText = name: text: fakeDrv name { inherit text; };
    writeShellScript = name: text: fakeDrv name { inherit text; };
    writeShellScriptBin = name: text: fakeDrv name { inherit text; };
    runCommand =
      name: env: script:
      fakeDrv name { inherit env script; };
  };
  narhubPackage = fakePath "narhub-0.1.0";

  # The flake's nixosModules.default (module.nix plus the flake's package as the default),
  # with a stand-in nixpkgs input whose callPackage returns a recognisable package.
  flakePackage = {
    type = "derivation";
    name = "narhub-from-flake";
    outPath = fakePath "narhub-from-flake-0.1.0";
  };
  flake = (import ../../../flake.nix).outputs {
    self = flake;
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
        _: pkgs // { callPackage = _: _: flakePackage; }
      );
    };
  };

  # Stub declarations of the NixOS options the module sets, with NixOS's merge behaviour where
  # it matters (lists concatenate).
  freeform = types.attrsOf (types.either (types.listOf types.anything) types.anything);
  stubs = {
    options = {
      assertions = mkOption {
        type = types.listOf (types.attrsOf types.anything);
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
      systemd.package = mkOption {
        type = types.str;
        default = fakePath "systemd-258.2";
      };
      services.redis.vmOverCommit = mkOption {
        type = types.bool;
        default = false;
      };
      systemd.tmpfiles.rules = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      systemd.services = mkOption {
        type = types.attrsOf (
          types.submodule {
            freeformType = freeform;
            options.serviceConfig = mkOption {
              type = freeform;
              default = { };
            };
          }
        );
        default = { };
      };
      users.users = mkOption {
        type = types.attrsOf (types.submodule { freeformType = freeform; });
        default = { };
      };
      users.groups = mkOption {
        type = types.attrsOf (types.submodule { freeformType = freeform; });
        default = { };
      };
      services.redis.servers = mkOption {
        type = types.attrsOf (
          types.submodule (
            { name, config, ... }:
            {
              freeformType = freeform;
              options.user = mkOption {
                type = types.str;
                default = "redis-${name}";
              };
              options.group = mkOption {
                type = types.str;
                default = config.user;
              };
              options.unixSocket = mkOption {
                type = types.nullOr types.str;
                default = "/run/redis-${name}/redis.sock";
              };
              options.settings = mkOption {
                type = freeform;
                default = { };
              };
            }
          )
        );
        default = { };
      };
      nix.package = mkOption {
        type = types.str;
        default = fakePath "nix-2.31.2";
      };
      nix.settings = mkOption {
        type = types.submodule {
          freeformType = freeform;
          options.trusted-users = mkOption {
            type = types.listOf types.str;
            default = [ "root" ];
          };
          options.system-features = mkOption {
            type = types.listOf types.str;
            default = [
              "nixos-test"
              "benchmark"
              "big-parallel"
              "kvm"
            ];
          };
        };
        default = { };
      };
    };
  };

  secret = name: "${secretsDir}/${name}";

  scenarios = {
    # Defaults only.
    minimal = {
      services.narhub.enable = true;
      services.narhub.package = narhubPackage;
    };

    # Every option the module has, S3 with key files, the hub with a local Redis open to
    # remote spokes, and a spoke on the same machine.
    full = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        openFirewall = true;
        settings = {
          listen = "0.0.0.0:8443";
          publicUrl = "https://cache.example.org";
          logLevel = "debug";
          maxNarSize = 1073741824;
          maxSmallFileSize = 1048576;
          gc = {
            pendingGracePeriod = 7200;
            interval = 600;
          };
          zstd.level = 9;
          storage = {
            type = "s3";
            bucket = "narhub-test";
            region = "eu-central-1";
            endpoint = "http://127.0.0.1:9000";
            prefix = "narhub/";
            forcePathStyle = true;
            partSize = 8388608;
            accessKeyIdFile = secret "s3-access-key-id";
            secretAccessKeyFile = secret "s3-secret-access-key";
            sessionTokenFile = secret "s3-session-token";
          };
          hub = {
            enable = true;
            evalWorkers = 2;
          };
        };
        caches = {
          main.signingKeyFile = secret "main.secret";
          team = {
            private = true;
            priority = 30;
            recompressToZstd = true;
            upstreams = [
              {
                url = "https://cache.nixos.org";
                publicKeys = [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
                priority = 40;
              }
            ];
          };
        };
        hub.redis = {
          port = 6379;
          bind = "0.0.0.0";
          passwordFile = secret "redis-password";
          openFirewall = true;
        };
      };
      services.narhub-spoke = {
        enable = true;
        package = narhubPackage;
        hub = "https://cache.example.org";
        tokenFile = secret "spoke-token";
        redisUrlFile = secret "spoke-redis-url";
        systems = [
          "x86_64-linux"
          "i686-linux"
        ];
        features = [
          "kvm"
          "big-parallel"
        ];
        maxJobs = 4;
        timeout = 7200;
        maxSilent = 600;
        stopTimeout = 30;
      };
    };

    # The hub on an external Redis (URL in a file), S3 through an AWS credentials file, data
    # outside /var/lib.
    external = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        awsSharedCredentialsFile = secret "aws-credentials";
        settings = {
          listen = "[::1]:8080";
          dataDir = "/srv/narhub";
          storage = {
            type = "s3";
            bucket = "narhub-test";
          };
          hub = {
            enable = true;
            redisUrlFile = secret "redis-url";
          };
        };
      };
    };

    # Local storage elsewhere, a hub on a local Redis reached through its socket (no password),
    # and a spoke beside it on the same socket.
    localHub = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings = {
          listen = "127.0.0.1:80";
          storage.path = "/srv/narhub-store";
          hub.enable = true;
        };
      };
      services.narhub-spoke = {
        enable = true;
        package = narhubPackage;
        hub = "http://127.0.0.1:80";
        tokenFile = secret "spoke-token";
        redisUrl = "redis://localhost/0?path=/run/redis-narhub/redis.sock";
      };
    };

    # The options that became settings, under their old names.
    renamed = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        dataDir = "/srv/narhub";
        logLevel = "warn";
        gc.interval = 60;
        storage.local.path = "/srv/narhub-store";
        hub.enable = true;
      };
    };

    # The GC settings of earlier versions, at the top of settings.
    renamedSettings = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings = {
          gcInterval = "2h";
          pendingGracePeriod = 60;
        };
      };
    };

    # A spoke with a plain Redis URL and characters systemd would otherwise expand.
    spokePlain = {
      services.narhub-spoke = {
        enable = true;
        package = narhubPackage;
        hub = "http://hub:8080/some%20path$HOME";
        tokenFile = secret "spoke-token";
        redisUrl = "redis://hub:6379/0";
        store = "daemon";
      };
    };

    # Through the flake: the package defaults to the flake's.
    flakeModule = {
      services.narhub.enable = true;
      services.narhub-push = {
        enable = true;
        cacheUrl = "http://hub:8080/main";
        tokenFile = secret "push-token";
      };
      services.narhub-spoke = {
        enable = true;
        hub = "http://hub:8080";
        tokenFile = secret "spoke-token";
        redisUrl = "redis://hub:6379/0";
      };
    };

    # A spoke building in a chroot store of its own, 32-bit builds included.
    spokeChroot = {
      services.narhub-spoke = {
        enable = true;
        package = narhubPackage;
        hub = "http://hub:8080";
        tokenFile = secret "spoke-token";
        redisUrl = "redis://hub:6379/0";
        store = "/srv/spoke-store";
        systems = [
          "x86_64-linux"
          "i686-linux"
        ];
      };
    };

    # The push unit in its default mode, watch-store; the state directory is `pushStateDir`
    # (module-eval.test.ts runs the unit's command against a real narhub).
    pushWatchStore = {
      services.narhub-push = {
        enable = true;
        package = narhubPackage;
        cacheUrl = "http://127.0.0.1:8080/main";
        tokenFile = secret "push-token";
        include = [ "narhub-push-eval-*" ];
      };
    };

    # The push unit fed by Nix's post-build-hook, with every option.
    pushHook = {
      services.narhub-push = {
        enable = true;
        package = narhubPackage;
        mode = "post-build-hook";
        cacheUrl = "http://127.0.0.1:8080/main";
        tokenFile = secret "push-token";
        include = [
          "narhub-push-eval-*"
          "my project-*"
        ];
        exclude = [
          "*.drv"
          "*-100%"
        ];
        onlyBuiltHere = true;
        uploadUpstreamPaths = true;
        maxSize = "2G";
        jobs = 2;
        extraArgs = [
          "--max-backoff"
          "1m"
        ];
      };
    };

    # What narhub-admin runs with: S3 key files and a signing key, data in `dataDir`.
    admin = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings = {
          inherit dataDir;
          listen = "0.0.0.0:8081";
          storage = {
            type = "s3";
            bucket = "narhub-test";
            endpoint = "http://127.0.0.1:9";
            forcePathStyle = true;
            accessKeyIdFile = secret "s3-access-key-id";
            secretAccessKeyFile = secret "s3-secret-access-key";
          };
        };
        caches.main.signingKeyFile = secret "main.secret";
      };
    };

    # Caches declared in two modules add up.
    cachesFromTwoModules = {
      imports = [
        { services.narhub.caches.main.signingKeyFile = secret "main.secret"; }
        { services.narhub.caches.team.private = true; }
      ];
      services.narhub = {
        enable = true;
        package = narhubPackage;
      };
    };

    # Sizes and durations as narhub reads them (src/units.ts).
    unitStrings = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings = {
          maxNarSize = "50G";
          gc.interval = "1h30m";
        };
      };
    };

    pushTokenInStore = {
      services.narhub-push = {
        enable = true;
        package = narhubPackage;
        cacheUrl = "http://127.0.0.1:8080/main";
        tokenFile = "/nix/store/${fakeHash}-push-token";
      };
    };
    pushBadMaxSize = {
      services.narhub-push = {
        enable = true;
        package = narhubPackage;
        cacheUrl = "http://127.0.0.1:8080/main";
        tokenFile = secret "push-token";
        maxSize = "lots";
      };
    };

    # Mistakes the module must refuse.
    badDuration = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.gc.interval = "soon";
      };
    };
    zstdLevelOutOfRange = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.zstd.level = 99;
      };
    };
    secretInStore = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        caches.main.signingKeyFile = "/nix/store/${fakeHash}-main.secret";
      };
    };
    s3SecretInStore = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.storage = {
          type = "s3";
          bucket = "narhub-test";
          accessKeyIdFile = "/nix/store/${fakeHash}-key-id";
        };
      };
    };
    redisWithoutPassword = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.hub.enable = true;
        hub.redis.port = 6379;
      };
    };
    badCacheName = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        caches."Bad.Name" = { };
      };
    };
    s3HalfCredentials = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.storage = {
          type = "s3";
          bucket = "narhub-test";
          accessKeyIdFile = secret "s3-access-key-id";
        };
      };
    };
    s3WithoutBucket = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.storage.type = "s3";
      };
    };
    spokeTwoRedisUrls = {
      services.narhub-spoke = {
        enable = true;
        package = narhubPackage;
        hub = "http://hub:8080";
        tokenFile = secret "spoke-token";
        redisUrl = "redis://hub:6379/0";
        redisUrlFile = secret "spoke-redis-url";
      };
    };
    redisUrlWithPassword = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.hub = {
          enable = true;
          redisUrl = "redis://:hunter2@redis.internal:6379/0";
        };
      };
      services.narhub-spoke = {
        enable = true;
        package = narhubPackage;
        hub = "http://hub:8080";
        tokenFile = secret "spoke-token";
        redisUrl = "rediss://narhub:hunter2@hub:6380/0";
      };
    };
    sharedDataDir = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.dataDir = "/var/lib";
      };
    };
    sharedStoragePath = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.storage.path = "/srv/";
      };
    };
    cachesInSettings = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.caches = [ { name = "main"; } ];
      };
    };
    badListen = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.listen = "everywhere";
      };
    };
    removedAddress = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        address = "0.0.0.0";
      };
    };
    # Evaluates fine; `narhub check-config` (the build-time check) must reject it.
    settingsTypo = {
      services.narhub = {
        enable = true;
        package = narhubPackage;
        settings.maxNarSiz = 1;
      };
    };
  };

  evaluated = lib.evalModules {
    modules = [
      stubs
      (if scenario == "flakeModule" then flake.nixosModules.default else ../../../nixos/module.nix)
      scenarios.${scenario}
    ];
    specialArgs = { inherit pkgs; };
  };
  inherit (evaluated) config;

  service = name: config.systemd.services.${name} or null;
  # Submodule values carry the module system's `_module` (with functions); nixos/config.nix
  # leaves it out anyway.
  withoutModuleArgs =
    v:
    if builtins.isAttrs v then
      lib.mapAttrs (_: withoutModuleArgs) (removeAttrs v [ "_module" ])
    else if builtins.isList v then
      map withoutModuleArgs v
    else
      v;
  narhub = config.services.narhub;
in
{
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  inherit (config) warnings;
  services = {
    narhub = service "narhub";
    narhub-spoke = service "narhub-spoke";
    narhub-push = service "narhub-push";
  };
  # The script nix.settings.post-build-hook names, if any.
  postBuildHook =
    let
      hook = config.nix.settings.post-build-hook or null;
    in
    if builtins.isAttrs hook then
      {
        path = hook.outPath;
        inherit (hook) text;
      }
    else
      hook;
  generatedConfig = if narhub.enable then narhub.generatedConfig else null;
  configInputs = if narhub.enable then withoutModuleArgs narhub.configInputs else null;
  configFile = if narhub.enable then toString narhub.configFile else null;
  checkScript = if narhub.enable then narhub.configFile.script else null;
  # Text of every stub script the units run (ExecStartPre, and the programs on their PATH), and
  # of the admin wrapper and its shim, by store path.
  scripts = lib.listToAttrs (
    map (s: lib.nameValuePair s.outPath s.text) (
      lib.filter (s: builtins.isAttrs s && s ? text) (
        lib.concatMap (svc: lib.toList (svc.serviceConfig.ExecStartPre or [ ]) ++ svc.path or [ ]) (
          lib.attrValues config.systemd.services
        )
        ++ lib.concatMap (p: [ p ] ++ lib.optional (p ? shim) p.shim) config.environment.systemPackages
      )
    )
  );
  adminWrapper = map (p: p.text or p) config.environment.systemPackages;
  inherit (config.users) users groups;
  redis = config.services.redis.servers;
  redisVmOverCommit = config.services.redis.vmOverCommit;
  firewall = config.networking.firewall.allowedTCPPorts;
  tmpfiles = config.systemd.tmpfiles.rules;
  nixSettings = config.nix.settings;
}
