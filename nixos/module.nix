# NixOS module for narhub: `services.narhub` (the binary cache, optionally with the build hub
# and its Redis), `services.narhub-spoke` (a build worker for the hub) and, in ./push.nix,
# `services.narhub-push` (this machine's new store paths pushed to a cache).
#
# `services.narhub.settings` is narhub's JSON config (RFC 42): its options are generated from
# the config schema (nixos/settings.nix), and the unit is built from it (data directory,
# storage path, listen address). nixos/config.nix writes the config; `narhub check-config
# --no-secrets` checks it while the system is built, so a typo fails `nixos-rebuild`, not the
# boot. Secrets never enter the Nix store or a command line: options take paths of files
# outside the store, systemd copies them in with `LoadCredential`, and the config names them
# as /run/credentials/<unit>/<name>.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    concatStringsSep
    escapeShellArg
    literalExpression
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    optional
    optionalAttrs
    optionals
    types
    ;

  cfg = config.services.narhub;
  spokeCfg = config.services.narhub-spoke;
  settings = cfg.settings;

  schema = lib.importJSON ./config-schema.json;

  # A directory of narhub's own: absolute, outside the Nix store.
  dataPath = types.pathWith {
    inStore = false;
    absolute = true;
  };

  generated = import ./settings.nix {
    inherit lib;
    overrides = {
      dataDir = {
        type = dataPath;
        default = "/var/lib/narhub";
        description = ''
          Under `/var/lib` it is the unit's `StateDirectory`; elsewhere tmpfiles creates it and the
          unit gets it in `ReadWritePaths`. Either way the unit waits for its mount
          (`RequiresMountsFor`). It must be a directory of narhub's own: shared ones such as
          `/var/lib` or `/srv` are refused, since tmpfiles would hand them to the `narhub` user.
        '';
      };
      listen = {
        example = "0.0.0.0:8080";
        description = ''
          Put a TLS proxy in front for public use. A port below 1024 gives the unit
          `CAP_NET_BIND_SERVICE`; a wildcard address (`0.0.0.0`, `[::]`) allows it netlink
          sockets, which Fastify uses to list the machine's addresses.
        '';
      };
      publicUrl.example = "https://cache.example.org";
      "storage.type" = {
        default = "local";
        description = "Where the caches' files live: the local disk or an S3 bucket.";
      };
      "storage.path".type = dataPath;
      "storage.path".description =
        "The unit may write it and waits for its mount; like `dataDir`, a directory of its own.";
      "storage.bucket".example = "narhub";
      "storage.endpoint".example = "https://s3.eu-central-003.backblazeb2.com";
      "hub.enable".description = ''
        Redis runs on this machine ({option}`services.narhub.hub.redis`) unless `hub.redisUrl` or
        `hub.redisUrlFile` name another.
      '';
      "hub.redisUrl".description = ''
        It lands in the Nix store and in the unit, so a URL with a password is refused: put that
        in `hub.redisUrlFile`. `rediss://` connects with TLS.
      '';
      "hub.redisUrlFile".example = "/var/lib/secrets/narhub-redis-url";
      "hub.evalMemoryMb".description = ''
        On NixOS the evaluators are also the kernel's first choice when memory runs out, and
        the unit does not stop when one of them is killed (`OOMPolicy=continue`).
      '';
      "caches.*.signingKeyFile" = {
        example = "/var/lib/secrets/narhub-main.secret";
        description = ''
          As written by `nix-store --generate-binary-cache-key` or `narhub keygen`; it may be
          readable by root only. When null, narhub generates a key in its data directory the first
          time it creates the cache.
        '';
      };
    };
  };
  inherit (generated) jsonValue secretPath;

  credentialsDir = unit: "/run/credentials/${unit}.service";
  cred = name: "${credentialsDir "narhub"}/${name}";

  # A value for an ExecStart argument: systemd expands `%` specifiers and `$` variables itself.
  systemdArg = value: escapeShellArg (builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (toString value));

  # `settings.listen`, HOST:PORT or [IPv6]:PORT; the unit needs both halves.
  listenParts = builtins.match "[[]([0-9a-fA-F:.]+)[]]:([0-9]{1,5})|([^:[:space:]]+):([0-9]{1,5})" settings.listen;
  part = i: if listenParts != null then builtins.elemAt listenParts i else null;
  host = if part 0 != null then part 0 else if part 2 != null then part 2 else "127.0.0.1";
  port = if part 1 != null then lib.toInt (part 1) else if part 3 != null then lib.toInt (part 3) else 8080;
  listenValid = listenParts != null && port <= 65535;
  isIPv6 = lib.hasInfix ":" host;
  wildcardListen = host == "0.0.0.0" || host == "::";
  # The admin wrapper talks to the service's own address.
  localUrl =
    let
      h =
        if host == "0.0.0.0" then
          "127.0.0.1"
        else if host == "::" then
          "[::1]"
        else if isIPv6 then
          "[${host}]"
        else
          host;
    in
    "http://${h}:${toString port}";

  dataDir = settings.dataDir;
  dataDirIsState = lib.hasPrefix "/var/lib/" dataDir;
  stateDirectory = lib.removePrefix "/var/lib/" dataDir;
  isS3 = settings.storage.type == "s3";
  storagePath = if !isS3 then settings.storage.path else null;
  # Directories tmpfiles creates and hands to the narhub user.
  ownDirectories = optional (!dataDirIsState) dataDir ++ optional (storagePath != null) storagePath;

  # Directories a `d` tmpfiles rule or a StateDirectory would take over from their owner.
  sharedDirectories = [
    "/"
    "/bin"
    "/boot"
    "/dev"
    "/etc"
    "/home"
    "/lib"
    "/media"
    "/mnt"
    "/nix"
    "/nix/var"
    "/opt"
    "/proc"
    "/root"
    "/run"
    "/srv"
    "/sys"
    "/tmp"
    "/usr"
    "/var"
    "/var/cache"
    "/var/db"
    "/var/empty"
    "/var/lib"
    "/var/lib/private"
    "/var/log"
    "/var/spool"
    "/var/tmp"
  ];
  # No trailing slash, `//`, `.` or `..`: the comparisons above must see the directory's one name.
  isNormalPath = p: builtins.match ".*(/$|//|/\\./|/\\.$|/\\.\\./|/\\.\\.$).*" p == null;

  hub = cfg.hub;
  hubEnabled = settings.hub.enable;
  localRedis = hubEnabled && hub.redis.createLocally;
  externalRedis = settings.hub.redisUrl != null || settings.hub.redisUrlFile != null;
  redisServer = config.services.redis.servers.narhub;
  redisGroup = redisServer.group or redisServer.user;
  redisPassword = localRedis && hub.redis.passwordFile != null;
  # A password in a URL: `redis://:pw@…` or `redis://user:pw@…`.
  hasPassword = url: builtins.match "[a-z]+://[^/@]*:[^/@]*@.*" url != null;

  # The config and the credentials it names (nixos/config.nix).
  configInputs = {
    settings = removeAttrs settings (lib.attrNames movedGcSettings);
    inherit (cfg) caches;
    credentialsDir = credentialsDir "narhub";
    hub =
      if !localRedis then
        { }
      else if redisPassword then
        { redisUrlFile = "/run/narhub/redis-url"; }
      else
        { redisUrl = "redis://localhost/0?path=${redisServer.unixSocket}"; };
  };
  rendered = import ./config.nix ({ inherit schema; } // configInputs);
  generatedConfig = rendered.config;

  # Credentials of narhub.service: name -> file on the host.
  credentials =
    rendered.credentials
    // optionalAttrs (cfg.awsSharedCredentialsFile != null) { aws-credentials = cfg.awsSharedCredentialsFile; }
    // optionalAttrs redisPassword { redis-password = hub.redis.passwordFile; };
  loadCredential = lib.mapAttrsToList (name: file: "${name}:${file}") credentials;

  environment = {
    HOME = dataDir;
    XDG_CACHE_HOME = "/var/cache/narhub";
    NODE_ENV = "production";
  }
  // optionalAttrs (cfg.awsSharedCredentialsFile != null) {
    AWS_SHARED_CREDENTIALS_FILE = cred "aws-credentials";
  };

  configFile = pkgs.writeText "narhub.json" (builtins.toJSON generatedConfig);

  # The config the service runs with, after `narhub check-config` accepted it. Secrets do not
  # exist at build time, hence --no-secrets; the service checks them when it starts.
  checkedConfigFile =
    pkgs.runCommand "narhub-config.json"
      {
        preferLocalBuild = true;
        allowSubstitutes = false;
      }
      ''
        ${cfg.package}/bin/narhub check-config --no-secrets ${configFile}
        cp ${configFile} $out
      '';

  # The hub reaches the local Redis through its socket: ioredis takes the socket from the URL's
  # `path` parameter. With a password the URL holds it, so the URL file is built at each start,
  # from the credential, in the service's private runtime directory (0700).
  redisUrlScript = pkgs.writeShellScript "narhub-redis-url" ''
    set -eu
    password=$(cat "$CREDENTIALS_DIRECTORY/redis-password")
    case "$password" in
      "" | *[!A-Za-z0-9._~-]*)
        echo "narhub: services.narhub.hub.redis.passwordFile must hold a non-empty password" \
          "of A-Z a-z 0-9 . _ ~ - only (e.g. openssl rand -hex 32)" >&2
        exit 1 ;;
    esac
    umask 077
    printf 'redis://:%s@localhost/0?path=%s\n' "$password" ${escapeShellArg redisServer.unixSocket} \
      > "$RUNTIME_DIRECTORY/redis-url"
  '';

  # The hub runs `nix` for evaluations (under hub.evalMemoryMb) and uploads. When memory runs
  # out, the kernel kills the process with the highest oom_score_adj first: these, not the
  # cache. An unprivileged process may raise its own score.
  hubNix = pkgs.writeShellScriptBin "nix" ''
    { echo 500 > /proc/self/oom_score_adj; } 2>/dev/null || true
    exec ${config.nix.package}/bin/nix "$@"
  '';
  hubPath = [
    hubNix
    config.nix.package
    pkgs.git
    # git+ssh:// flakes; the key and known_hosts go in <dataDir>/.ssh.
    pkgs.openssh
  ];

  # `narhub-admin`: the CLI as a transient unit with narhub.service's user, environment and
  # credentials, as nixpkgs' atticd-atticadm does (systemd-run --pipe --wait), on the service's
  # config and address. Its credentials land in its own directory, so the shim points the
  # config there.
  adminShim = pkgs.writeShellScript "narhub-admin-shim" ''
    set -eu
    config=$(< ${checkedConfigFile})
    if [ -n "''${CREDENTIALS_DIRECTORY-}" ]; then
      from=${escapeShellArg "${credentialsDir "narhub"}/"}
      config=''${config//"$from"/"$CREDENTIALS_DIRECTORY/"}
      if [ -n "''${AWS_SHARED_CREDENTIALS_FILE-}" ]; then
        export AWS_SHARED_CREDENTIALS_FILE="$CREDENTIALS_DIRECTORY/aws-credentials"
      fi
    fi
    file=$(mktemp)
    printf '%s\n' "$config" > "$file"
    case "''${1-}" in
      cache | token | reindex | project | eval | build) set -- "$@" --config "$file" ;;
    esac
    exec ${cfg.package}/bin/narhub "$@"
  '';
  adminWrapper = pkgs.writeShellScriptBin "narhub-admin" (
    concatStringsSep " \\\n  " (
      [
        "exec ${config.systemd.package}/bin/systemd-run"
        "--quiet"
        "--pipe"
        "--wait"
        "--collect"
        "--service-type=exec"
        "--expand-environment=no"
        "--property=User=narhub"
        "--property=Group=narhub"
        "--property=UMask=0077"
        "--property=PrivateTmp=yes"
        "--working-directory=${escapeShellArg dataDir}"
      ]
      ++ map (c: "--property=LoadCredential=${escapeShellArg c}") loadCredential
      ++ lib.mapAttrsToList (k: v: "--setenv=${escapeShellArg "${k}=${v}"}") (
        environment
        // {
          NARHUB_SERVER = localUrl;
          PATH = lib.makeBinPath ((optionals hubEnabled hubPath) ++ [ pkgs.coreutils ]);
        }
      )
      ++ [
        "--"
        "${adminShim}"
        ''"$@"''
      ]
    )
    + "\n"
  )
  // {
    # For tests, which run the shim.
    shim = adminShim;
  };

  # Shared by every narhub unit (nixos/hardening.nix).
  hardening = import ./hardening.nix;

  chrootStoreDir = if spokeCfg.store == null then null else lib.removePrefix "local?root=" spokeCfg.store;
  chrootStore = chrootStoreDir != null && lib.hasPrefix "/" chrootStoreDir;
  # Systems Nix builds with a 32-bit personality and 32-bit system calls.
  compatSystems = [
    "i686-linux"
    "armv7l-linux"
    "armv6l-linux"
    "armv5tel-linux"
  ];

  # What Nix's build sandbox needs when the spoke runs it itself (a chroot store): user, mount,
  # PID, UTS and network namespaces and the system calls to set them up; a fresh /proc, which
  # the kernel refuses to mount while /proc has overmounts (NixOS/nix#13128), so nothing may
  # cover parts of /proc (ProtectKernelTunables, ProtectKernelLogs, ProtectProc) or /dev
  # (PrivateDevices, DevicePolicy: builds get /dev/ptmx, /dev/kvm); sethostname and
  # setdomainname in the build's UTS namespace (ProtectHostname forbids them); personality()
  # for ASLR off and 32-bit builds (LockPersonality); and 32-bit system calls for those builds.
  chrootSandbox = {
    RestrictNamespaces = false;
    SystemCallFilter = [
      "@system-service"
      "@mount"
      "@privileged"
    ];
    ProtectKernelTunables = false;
    ProtectKernelLogs = false;
    ProtectProc = "default";
    PrivateDevices = false;
    DevicePolicy = "auto";
    ProtectHostname = false;
    LockPersonality = false;
    ReadWritePaths = [ chrootStoreDir ];
  }
  // optionalAttrs (lib.any (s: builtins.elem s compatSystems) spokeCfg.systems) {
    SystemCallArchitectures = "";
  };

  # `narhub spoke` reads the Redis URL from $NARHUB_REDIS_URL when no --redis-url is given: the
  # URL (and its password) goes from the credential to the spoke's environment, never to a
  # command line. /proc/PID/environ is readable by the same user and root only.
  spokeLauncher = pkgs.writeShellScript "narhub-spoke" ''
    set -eu
    NARHUB_REDIS_URL=$(cat "$CREDENTIALS_DIRECTORY/redis-url")
    export NARHUB_REDIS_URL
    exec ${spokeCfg.package}/bin/narhub "$@"
  '';
  # A spoke on the hub's machine, using the local Redis (its socket, or TCP).
  spokeBesideLocalRedis = cfg.enable && localRedis;

  cacheOptions = types.submodule (
    generated.objectModule [ "caches" "*" ] (removeAttrs schema.properties.caches.items.properties [ "name" ]) (
      schema.properties.caches.items.required or [ ]
    )
  );
  useListen = "Use services.narhub.settings.listen = \"ADDRESS:PORT\".";
  moved =
    from: to: lib.mkRenamedOptionModule ([ "services" "narhub" ] ++ from) ([ "services" "narhub" "settings" ] ++ to);
  # Settings of earlier versions and their keys in `settings.gc` now. mkRenamedOptionModule
  # cannot reach into the settings submodule, so they are hidden options of it that set the new
  # ones (both at once is a conflict), left out of the config, with a warning each.
  movedGcSettings = {
    gcInterval = "interval";
    pendingGracePeriod = "pendingGracePeriod";
    supersededGracePeriod = "supersededGracePeriod";
  };
  movedGcModule =
    { config, ... }:
    {
      options = lib.mapAttrs (
        old: _:
        mkOption {
          type = generated.jsonValue;
          default = null;
          visible = false;
        }
      ) movedGcSettings;
      config.gc = lib.mapAttrs' (
        old: new: lib.nameValuePair new (mkIf (config.${old} != null) config.${old})
      ) movedGcSettings;
    };
in
{
  imports = [
    ./push.nix
    (moved [ "dataDir" ] [ "dataDir" ])
    (moved [ "publicUrl" ] [ "publicUrl" ])
    (moved [ "logLevel" ] [ "logLevel" ])
    (moved [ "maxNarSize" ] [ "maxNarSize" ])
    (moved [ "gc" "pendingGracePeriod" ] [ "gc" "pendingGracePeriod" ])
    (moved [ "gc" "supersededGracePeriod" ] [ "gc" "supersededGracePeriod" ])
    (moved [ "gc" "interval" ] [ "gc" "interval" ])
    (moved [ "storage" "type" ] [ "storage" "type" ])
    (moved [ "storage" "local" "path" ] [ "storage" "path" ])
    (moved [ "hub" "enable" ] [ "hub" "enable" ])
    (moved [ "hub" "redisUrl" ] [ "hub" "redisUrl" ])
    (moved [ "hub" "redisUrlFile" ] [ "hub" "redisUrlFile" ])
    (lib.mkRemovedOptionModule [ "services" "narhub" "address" ] useListen)
    (lib.mkRemovedOptionModule [ "services" "narhub" "port" ] useListen)
    (lib.mkRemovedOptionModule [ "services" "narhub" "storage" "s3" ] ''
      Its keys are in services.narhub.settings.storage (with type = "s3"); credentialsFile is
      services.narhub.awsSharedCredentialsFile.'')
  ];

  options.services.narhub = {
    enable = mkEnableOption "narhub, a Nix binary cache (and build hub)";

    package = lib.mkPackageOption pkgs "narhub" { };

    settings = mkOption {
      type = types.submodule [
        (generated.objectModule [ ] (removeAttrs schema.properties [ "caches" ]) schema.required)
        movedGcModule
      ];
      default = { };
      example = literalExpression ''
        {
          listen = "0.0.0.0:8080";
          publicUrl = "https://cache.example.org";
          storage = {
            type = "s3";
            bucket = "narhub";
            accessKeyIdFile = "/var/lib/secrets/s3-id";
            secretAccessKeyFile = "/var/lib/secrets/s3-key";
          };
          hub = { enable = true; buildTimeout = 7200; };
        }
      '';
      description = ''
        narhub's JSON config (the schema of `src/config/schema.ts`; see the README). Every key
        has an option here, generated from that schema; keys it does not know yet may be set too,
        and `narhub check-config` refuses unknown ones when the system is built. Caches are
        {option}`services.narhub.caches`. Never put a secret here: this ends up in the Nix store;
        use the `*File` keys, which the unit loads with `LoadCredential`.
      '';
    };

    caches = mkOption {
      type = types.attrsOf cacheOptions;
      default = { };
      example = literalExpression ''
        {
          main = { signingKeyFile = "/var/lib/secrets/narhub-main.secret"; };
          team = { private = true; priority = 30; };
        }
      '';
      description = ''
        Caches to create (or update) at every start, by name (`a-z 0-9 - _`). When empty, narhub
        creates a public cache `main` on its first start. A cache's `upstreams` are the binary
        caches it pulls missing paths through from (`{ url; publicKeys; priority; }`).
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open the port of {option}`services.narhub.settings.listen` in the firewall.";
    };

    awsSharedCredentialsFile = mkOption {
      type = types.nullOr secretPath;
      default = null;
      example = "/var/lib/secrets/narhub-aws-credentials";
      description = ''
        An AWS shared credentials file (`[default]` with `aws_access_key_id` and
        `aws_secret_access_key`), for S3 storage through the SDK's default credential chain
        (`AWS_SHARED_CREDENTIALS_FILE`), instead of `settings.storage.accessKeyIdFile` and
        `secretAccessKeyFile`. When neither is set, the chain's other sources apply (e.g. an EC2
        instance role).
      '';
    };

    hub.redis = {
      createLocally = mkOption {
        type = types.bool;
        default = settings.hub.redisUrl == null && settings.hub.redisUrlFile == null;
        defaultText = literalExpression "settings.hub.redisUrl == null && settings.hub.redisUrlFile == null";
        description = ''
          With `settings.hub.enable`, run a local Redis for the hub (`services.redis.servers.narhub`):
          persistence on (RDB snapshots and the append-only file, with `vm.overcommit_memory = 1`
          so background saves do not fail) and `maxmemory-policy noeviction`, since the queues
          must never lose a key. The hub reaches it through its Unix socket
          (`redis://localhost/0?path=/run/redis-narhub/redis.sock`) as a member of the socket's
          group, and so does a spoke on this machine. narhub.service only wants Redis: the cache
          keeps serving while Redis restarts, and the hub reconnects.
        '';
      };
      port = mkOption {
        type = types.port;
        default = 0;
        example = 6379;
        description = ''
          TCP port of the local Redis, for spokes on other machines (they connect to Redis
          directly). 0 keeps Redis on its Unix socket only, which spokes on this machine use.
          A TCP port needs {option}`hub.redis.passwordFile`. Redis speaks plain text on it: across
          an untrusted network, give Redis TLS (`services.redis.servers.narhub.settings`:
          `tls-port`, `tls-cert-file`, `tls-key-file`) and have the spokes use `rediss://`.
        '';
      };
      bind = mkOption {
        type = types.nullOr types.str;
        default = "127.0.0.1";
        example = "0.0.0.0";
        description = "Addresses the local Redis listens on when {option}`hub.redis.port` is set.";
      };
      passwordFile = mkOption {
        type = types.nullOr secretPath;
        default = null;
        example = "/var/lib/secrets/narhub-redis-password";
        description = ''
          File holding the local Redis password (`requirepass`); only `A-Z a-z 0-9 . _ ~ -`,
          e.g. from `openssl rand -hex 32`. Spokes then use `redis://:PASSWORD@HUB:PORT/0` in
          their {option}`services.narhub-spoke.redisUrlFile`.
        '';
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Whether to open {option}`hub.redis.port` in the firewall, for remote spokes.";
      };
    };

    generatedConfig = mkOption {
      type = types.attrsOf jsonValue;
      internal = true;
      readOnly = true;
      description = "The config narhub runs with, as the module generates it (for inspection and tests).";
    };

    configFile = mkOption {
      type = types.path;
      internal = true;
      readOnly = true;
      description = "The generated config file, after `narhub check-config` accepted it.";
    };

    configInputs = mkOption {
      type = types.raw;
      internal = true;
      readOnly = true;
      description = "What nixos/config.nix makes the config from (for tests).";
    };
  };

  options.services.narhub-spoke = {
    enable = mkEnableOption "a narhub build spoke, which takes build jobs from a narhub hub";

    package = lib.mkPackageOption pkgs "narhub" { };

    hub = mkOption {
      type = types.str;
      example = "https://cache.example.org";
      description = "Base URL of the narhub hub (its cache), where outputs and logs are uploaded.";
    };

    tokenFile = mkOption {
      type = secretPath;
      example = "/var/lib/secrets/narhub-spoke-token";
      description = ''
        File holding a narhub token with write access to the caches the hub builds for
        (`narhub token create --cache '*' --perm write`), passed with `LoadCredential`.
      '';
    };

    redisUrl = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "redis://hub.internal:6379/0";
      description = ''
        URL of the hub's Redis. It is on the unit's command line, so a URL with a password is
        refused: use {option}`redisUrlFile`. On the hub's machine, without a password:
        `redis://localhost/0?path=/run/redis-narhub/redis.sock`.
      '';
    };

    redisUrlFile = mkOption {
      type = types.nullOr secretPath;
      default = null;
      example = "/var/lib/secrets/narhub-redis-url";
      description = ''
        File holding the hub's Redis URL with its password (`redis://:PASSWORD@hub:6379/0`), passed
        with `LoadCredential`. Across an untrusted network use `rediss://` (Redis with TLS); a
        certificate from a private CA needs `NODE_EXTRA_CA_CERTS` in
        `systemd.services.narhub-spoke.environment`.
      '';
    };

    systems = mkOption {
      type = types.nonEmptyListOf types.str;
      default = [ pkgs.stdenv.hostPlatform.system ] ++ (config.nix.settings.extra-platforms or [ ]);
      defaultText = literalExpression "[ pkgs.stdenv.hostPlatform.system ] ++ config.nix.settings.extra-platforms";
      description = "Systems this spoke builds for.";
    };

    features = mkOption {
      type = types.listOf types.str;
      default = config.nix.settings.system-features or [ ];
      defaultText = literalExpression "config.nix.settings.system-features";
      description = ''
        System features this spoke offers (`requiredSystemFeatures` of the derivations it may take).
        The local nix-daemon must offer them too.
      '';
    };

    maxJobs = mkOption {
      type = types.ints.positive;
      default = 1;
      description = "Builds run at the same time.";
    };

    store = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/narhub-spoke/store";
      description = ''
        Nix store to build in (`--store`): null or `auto` for the machine's store through
        nix-daemon (recommended), or the directory of a chroot store. With a chroot store the
        spoke runs Nix's build sandbox itself, so the unit allows it what the sandbox needs
        (namespaces, mounts, a fresh /proc, personality and host name changes), and the
        directory is made writable.
      '';
    };

    timeout = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      description =
        "Default wall-clock limit of a build in seconds, for jobs that set none; the spoke's default when null.";
    };

    maxSilent = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      description =
        "Default limit in seconds on a build printing nothing, for jobs that set none; the spoke's default when null.";
    };

    stopTimeout = mkOption {
      type = types.ints.positive;
      default = 60;
      description = ''
        Seconds a stopping spoke (on `nixos-rebuild switch`, or shutdown) may spend finishing its
        running builds and uploading them. Then systemd kills it, and those builds run again on
        another spoke (BullMQ hands their stalled jobs on). This bounds how long a switch waits.
      '';
    };
  };

  config = mkMerge [
    (mkIf cfg.enable {
      warnings = lib.mapAttrsToList (
        old: new:
        "The option `services.narhub.settings.${old}' has been renamed to `services.narhub.settings.gc.${new}'."
      ) (lib.filterAttrs (old: _: settings.${old} != null) movedGcSettings);
      assertions = [
        {
          assertion = !(settings ? caches);
          message = "services.narhub.settings.caches: declare caches in services.narhub.caches.<name> instead.";
        }
        {
          assertion = listenValid;
          message =
            "services.narhub.settings.listen must be HOST:PORT or [IPv6]:PORT, not ${builtins.toJSON settings.listen}.";
        }
        {
          assertion = isS3 -> settings.storage.bucket != null;
          message = "services.narhub.settings.storage.type = \"s3\" needs services.narhub.settings.storage.bucket.";
        }
        {
          assertion =
            isS3 -> ((settings.storage.accessKeyIdFile == null) == (settings.storage.secretAccessKeyFile == null));
          message = "services.narhub.settings.storage.accessKeyIdFile and secretAccessKeyFile go together.";
        }
        {
          assertion = isS3 -> (settings.storage.sessionTokenFile != null -> settings.storage.accessKeyIdFile != null);
          message = "services.narhub.settings.storage.sessionTokenFile needs accessKeyIdFile and secretAccessKeyFile.";
        }
        {
          assertion = cfg.awsSharedCredentialsFile == null || !isS3 || settings.storage.accessKeyIdFile == null;
          message =
            "services.narhub: give either awsSharedCredentialsFile or "
            + "settings.storage.accessKeyIdFile/secretAccessKeyFile, not both.";
        }
        {
          assertion =
            lib.all (name: builtins.match "[a-z0-9][a-z0-9_-]{0,62}" name != null) (builtins.attrNames cfg.caches);
          message =
            "services.narhub.caches: a cache name is 1-63 of a-z, 0-9, - and _, starting with a letter or digit.";
        }
        {
          assertion = lib.all (d: isNormalPath d && !(builtins.elem d sharedDirectories)) (
            [ dataDir ] ++ optional (storagePath != null) storagePath
          );
          message = ''
            services.narhub.settings.dataDir and storage.path must each be a directory of narhub's own,
            written without a trailing slash, `.` or `..` (not ${concatStringsSep ", " sharedDirectories}):
            the unit makes it narhub's (tmpfiles `d` rule or StateDirectory).'';
        }
        {
          assertion = !(settings.hub.redisUrl != null && settings.hub.redisUrlFile != null);
          message = "services.narhub.settings.hub: set redisUrl or redisUrlFile, not both.";
        }
        {
          assertion = settings.hub.redisUrl == null || !(hasPassword settings.hub.redisUrl);
          message =
            "services.narhub.settings.hub.redisUrl carries a password, which would land in the Nix store: "
            + "put the URL in a file and name it in settings.hub.redisUrlFile.";
        }
        {
          assertion = hubEnabled -> (hub.redis.createLocally || externalRedis);
          message =
            "services.narhub.settings.hub needs Redis: keep hub.redis.createLocally "
            + "or set settings.hub.redisUrl / redisUrlFile.";
        }
        {
          assertion = hubEnabled -> !(hub.redis.createLocally && externalRedis);
          message =
            "services.narhub.hub.redis.createLocally and an external settings.hub.redisUrl / redisUrlFile "
            + "exclude each other.";
        }
        {
          assertion = localRedis -> (hub.redis.port != 0 -> hub.redis.passwordFile != null);
          message =
            "services.narhub.hub.redis.port exposes Redis over TCP: set services.narhub.hub.redis.passwordFile.";
        }
      ];

      services.narhub.generatedConfig = generatedConfig;
      services.narhub.configFile = checkedConfigFile;
      services.narhub.configInputs = configInputs;

      users.users.narhub = {
        isSystemUser = true;
        group = "narhub";
        home = dataDir;
        description = "narhub binary cache";
        # The Redis socket is mode 660, owned by the server's group.
        extraGroups = optional localRedis redisGroup;
      };
      users.groups.narhub = { };

      environment.systemPackages = [ adminWrapper ];

      networking.firewall.allowedTCPPorts =
        optional cfg.openFirewall port
        ++ optional (localRedis && hub.redis.openFirewall && hub.redis.port != 0) hub.redis.port;

      systemd.tmpfiles.rules = map (d: "d ${d} 0750 narhub narhub - -") ownDirectories;

      services.redis.servers.narhub = mkIf localRedis {
        enable = true;
        inherit (hub.redis) port bind;
        requirePassFile = hub.redis.passwordFile;
        # Queues must survive a restart and never lose keys to eviction.
        appendOnly = true;
        settings.maxmemory-policy = "noeviction";
      };
      # RDB snapshots fork; without overcommit a large dataset makes the fork fail, and Redis
      # then refuses writes until a save succeeds.
      services.redis.vmOverCommit = mkIf localRedis true;

      systemd.services.narhub = {
        description = "narhub Nix binary cache" + lib.optionalString hubEnabled " and build hub";
        wantedBy = [ "multi-user.target" ];
        # Redis is wanted, not required: the cache serves while Redis restarts.
        wants = [ "network-online.target" ] ++ optional localRedis "redis-narhub.service";
        after = [ "network-online.target" ] ++ optional localRedis "redis-narhub.service";
        # systemd-notify (readiness); nix, git and ssh for the hub.
        path = [ config.systemd.package ] ++ optionals hubEnabled hubPath;
        restartTriggers = [ checkedConfigFile ];
        inherit environment;
        unitConfig.RequiresMountsFor = [ dataDir ] ++ optional (storagePath != null) storagePath;
        serviceConfig = hardening // {
          # narhub tells systemd once it listens (and the hub started).
          Type = "notify";
          NotifyAccess = "all";
          ExecStartPre = optional redisPassword redisUrlScript;
          ExecStart = "${cfg.package}/bin/narhub serve --config ${checkedConfigFile}";
          User = "narhub";
          Group = "narhub";
          LoadCredential = loadCredential;
          StateDirectory = optional dataDirIsState stateDirectory;
          StateDirectoryMode = "0750";
          RuntimeDirectory = "narhub";
          RuntimeDirectoryMode = "0700";
          CacheDirectory = "narhub";
          WorkingDirectory = dataDir;
          ReadWritePaths = ownDirectories;
          Restart = "on-failure";
          RestartSec = 5;
          # An evaluator killed for memory is the hub's business, not a reason to stop the cache.
          OOMPolicy = "continue";
          # SIGTERM drains in-flight uploads before the process exits.
          TimeoutStopSec = 120;
          LimitNOFILE = 65536;
          # Fastify lists the machine's addresses (getifaddrs, over netlink) when it listens on a
          # wildcard address; everything else needs IP and Unix sockets only.
          RestrictAddressFamilies = [
            "AF_INET"
            "AF_INET6"
            "AF_UNIX"
          ]
          ++ optional wildcardListen "AF_NETLINK";
          CapabilityBoundingSet = if port < 1024 then [ "CAP_NET_BIND_SERVICE" ] else "";
          AmbientCapabilities = optional (port < 1024) "CAP_NET_BIND_SERVICE";
        };
      };
    })

    (mkIf spokeCfg.enable {
      assertions = [
        {
          assertion = (spokeCfg.redisUrl == null) != (spokeCfg.redisUrlFile == null);
          message = "services.narhub-spoke needs exactly one of redisUrl and redisUrlFile.";
        }
        {
          assertion = spokeCfg.redisUrl != null -> builtins.match "rediss?://.+" spokeCfg.redisUrl != null;
          message = "services.narhub-spoke.redisUrl must be a redis:// or rediss:// URL.";
        }
        {
          assertion = spokeCfg.redisUrl == null || !(hasPassword spokeCfg.redisUrl);
          message =
            "services.narhub-spoke.redisUrl carries a password, which would land in the Nix store and on a "
            + "command line: put the URL in a file and name it in redisUrlFile.";
        }
      ];

      systemd.tmpfiles.rules = optional chrootStore "d ${chrootStoreDir} 0750 narhub-spoke narhub-spoke - -";

      users.users.narhub-spoke = {
        isSystemUser = true;
        group = "narhub-spoke";
        home = "/var/lib/narhub-spoke";
        description = "narhub build spoke";
        # The hub's local Redis socket (mode 660, owned by the server's group).
        extraGroups = optional spokeBesideLocalRedis redisGroup;
      };
      users.groups.narhub-spoke = { };

      # The spoke adds the inputs it fetched from the hub's cache (it checks their signatures
      # against the keys each job names) and builds derivations it sends itself, with per-build
      # limits, through `nix-store --serve`: all restricted to trusted users of nix-daemon.
      # Builds still run in the daemon's sandbox as nixbld users, never as this user. "root" is
      # NixOS's default, which a definition here would otherwise replace.
      nix.settings.trusted-users = [
        "root"
        "narhub-spoke"
      ];

      systemd.services.narhub-spoke = {
        description = "narhub build spoke";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ] ++ optional spokeBesideLocalRedis "redis-narhub.service";
        after = [
          "network-online.target"
          "nix-daemon.socket"
        ]
        ++ optional spokeBesideLocalRedis "redis-narhub.service";
        path = [ config.nix.package ];
        environment = {
          HOME = "/var/lib/narhub-spoke";
          XDG_CACHE_HOME = "/var/cache/narhub-spoke";
          # The spoke's private directory (its netrc with the token, logs being collected) must
          # be visible to nix-daemon, which substitutes from the hub's cache with that netrc:
          # not the unit's private /tmp, but its RuntimeDirectory (0700, gone when it stops).
          TMPDIR = "/run/narhub-spoke";
          NODE_ENV = "production";
        }
        // optionalAttrs (spokeCfg.store == null) { NIX_REMOTE = "daemon"; };
        serviceConfig =
          hardening
          // optionalAttrs chrootStore chrootSandbox
          // {
            Type = "simple";
            ExecStart = concatStringsSep " " (
              [
                (if spokeCfg.redisUrlFile != null then "${spokeLauncher}" else "${spokeCfg.package}/bin/narhub")
                "spoke"
                "--hub"
                (systemdArg spokeCfg.hub)
                "--token-file"
                "%d/token"
              ]
              ++ (
                # With a file, the launcher hands the URL over in $NARHUB_REDIS_URL.
                optionals (spokeCfg.redisUrl != null) [
                  "--redis-url"
                  (systemdArg spokeCfg.redisUrl)
                ]
              )
              ++ [
                "--systems"
                (systemdArg (concatStringsSep "," spokeCfg.systems))
                "--max-jobs"
                (toString spokeCfg.maxJobs)
              ]
              ++ optionals (spokeCfg.features != [ ]) [
                "--features"
                (systemdArg (concatStringsSep "," spokeCfg.features))
              ]
              ++ optionals (spokeCfg.store != null) [
                "--store"
                (systemdArg spokeCfg.store)
              ]
              ++ optionals (spokeCfg.timeout != null) [
                "--timeout"
                (toString spokeCfg.timeout)
              ]
              ++ optionals (spokeCfg.maxSilent != null) [
                "--max-silent"
                (toString spokeCfg.maxSilent)
              ]
            );
            User = "narhub-spoke";
            Group = "narhub-spoke";
            LoadCredential = [
              "token:${spokeCfg.tokenFile}"
            ]
            ++ optional (spokeCfg.redisUrlFile != null) "redis-url:${spokeCfg.redisUrlFile}";
            StateDirectory = "narhub-spoke";
            StateDirectoryMode = "0750";
            RuntimeDirectory = "narhub-spoke";
            RuntimeDirectoryMode = "0700";
            CacheDirectory = "narhub-spoke";
            WorkingDirectory = "/var/lib/narhub-spoke";
            Restart = "always";
            RestartSec = 10;
            # SIGTERM to the spoke only, so it can finish and upload its running builds; after
            # stopTimeout, SIGKILL to everything left.
            KillMode = "mixed";
            TimeoutStopSec = spokeCfg.stopTimeout;
            RestrictAddressFamilies = [
              "AF_INET"
              "AF_INET6"
              "AF_UNIX"
            ];
            CapabilityBoundingSet = "";
          };
      };
    })
  ];
}
