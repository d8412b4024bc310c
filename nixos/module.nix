# NixOS module for narhub: `services.narhub` (the binary cache, optionally with the build hub
# and its Redis) and `services.narhub-spoke` (a build worker for the hub).
#
# The module writes one JSON config (the schema of src/config/schema.ts) and checks it with
# `narhub check-config --no-secrets` while the system is built, so a typo fails
# `nixos-rebuild`, not the boot. Secrets never enter the Nix store or a command line: options
# take paths of files outside the store, systemd copies them in with `LoadCredential`, and the
# generated config names them as /run/credentials/<unit>/<name>.
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
    filterAttrs
    hasPrefix
    literalExpression
    mapAttrsToList
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

  # A JSON value, as in nixpkgs' `pkgs.formats.json`, written out here so the type needs no pkgs.
  jsonValue =
    let
      valueType =
        types.nullOr (
          types.oneOf [
            types.bool
            types.int
            types.float
            types.str
            (types.lazyAttrsOf valueType)
            (types.listOf valueType)
          ]
        )
        // {
          description = "JSON value";
        };
    in
    valueType;

  # An absolute path that is not in the Nix store, and not a Nix path literal either (which would
  # be copied into the store as soon as it is interpolated): the type of every secret file.
  secretPath = types.pathWith {
    inStore = false;
    absolute = true;
  };

  credentialsDir = unit: "/run/credentials/${unit}.service";
  cred = name: "${credentialsDir "narhub"}/${name}";

  # A value for an ExecStart argument: systemd expands `%` specifiers and `$` variables itself.
  systemdArg =
    value: escapeShellArg (builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (toString value));

  isIPv6 = address: lib.hasInfix ":" address;
  listen = if isIPv6 cfg.address then "[${cfg.address}]:${toString cfg.port}" else "${cfg.address}:${toString cfg.port}";
  wildcardListen = builtins.elem cfg.address [
    "0.0.0.0"
    "::"
  ];

  dataDirIsState = hasPrefix "/var/lib/" cfg.dataDir;
  stateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;

  s3 = cfg.storage.s3;
  isS3 = cfg.storage.type == "s3" && s3 != null;

  hub = cfg.hub;
  localRedis = hub.enable && hub.redis.createLocally;
  redisServer = config.services.redis.servers.narhub;
  redisPassword = localRedis && hub.redis.passwordFile != null;

  # Credentials of narhub.service: name -> file on the host.
  credentials =
    lib.mapAttrs' (name: c: lib.nameValuePair "signing-key-${name}" c.signingKeyFile) (
      filterAttrs (_: c: c.signingKeyFile != null) cfg.caches
    )
    // optionalAttrs isS3 (
      filterAttrs (_: v: v != null) {
        s3-access-key-id = s3.accessKeyIdFile;
        s3-secret-access-key = s3.secretAccessKeyFile;
        s3-session-token = s3.sessionTokenFile;
        s3-credentials = s3.credentialsFile;
      }
    )
    // optionalAttrs (hub.enable && hub.redisUrlFile != null) { redis-url = hub.redisUrlFile; }
    // optionalAttrs redisPassword { redis-password = hub.redis.passwordFile; };

  cacheSettings =
    name: c:
    (removeAttrs c [
      "signingKeyFile"
      "_module"
    ])
    // {
      inherit name;
    }
    // optionalAttrs (c.signingKeyFile != null) { signingKeyFile = cred "signing-key-${name}"; };

  storageSettings =
    if isS3 then
      filterAttrs (_: v: v != null) (
        (removeAttrs s3 [
          "accessKeyIdFile"
          "secretAccessKeyFile"
          "sessionTokenFile"
          "credentialsFile"
          "_module"
        ])
        // {
          type = "s3";
        }
      )
      // optionalAttrs (s3.accessKeyIdFile != null) { accessKeyIdFile = cred "s3-access-key-id"; }
      // optionalAttrs (s3.secretAccessKeyFile != null) { secretAccessKeyFile = cred "s3-secret-access-key"; }
      // optionalAttrs (s3.sessionTokenFile != null) { sessionTokenFile = cred "s3-session-token"; }
    else
      { type = "local"; } // optionalAttrs (cfg.storage.local.path != null) { inherit (cfg.storage.local) path; };

  hubSettings =
    {
      inherit (hub) enable;
    }
    // optionalAttrs hub.enable (
      if localRedis then
        (
          if redisPassword then
            { redisUrlFile = "/run/narhub/redis-url"; }
          else
            { redisUrl = "redis://localhost/0?path=${redisServer.unixSocket}"; }
        )
      else
        optionalAttrs (hub.redisUrl != null) { inherit (hub) redisUrl; }
        // optionalAttrs (hub.redisUrlFile != null) { redisUrlFile = cred "redis-url"; }
    );

  generatedConfig = lib.recursiveUpdate (
    {
      inherit (cfg) dataDir logLevel maxNarSize;
      inherit listen;
      inherit (cfg.gc) pendingGracePeriod supersededGracePeriod;
      gcInterval = cfg.gc.interval;
      caches = mapAttrsToList cacheSettings cfg.caches;
      storage = storageSettings;
      hub = hubSettings;
    }
    // optionalAttrs (cfg.publicUrl != null) { inherit (cfg) publicUrl; }
  ) cfg.settings;

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
        echo "narhub: services.narhub.hub.redis.passwordFile must hold a non-empty password of A-Z a-z 0-9 . _ ~ - only (e.g. openssl rand -hex 32)" >&2
        exit 1 ;;
    esac
    umask 077
    printf 'redis://:%s@localhost/0?path=%s\n' "$password" ${escapeShellArg redisServer.unixSocket} > "$RUNTIME_DIRECTORY/redis-url"
  '';

  chrootStoreDir =
    if spokeCfg.store == null then null else lib.removePrefix "local?root=" spokeCfg.store;
  chrootStore = chrootStoreDir != null && hasPrefix "/" chrootStoreDir;

  # `narhub spoke` reads the Redis URL from $NARHUB_REDIS_URL when no --redis-url is given: the
  # URL (and its password) goes from the credential to the spoke's environment, never to a
  # command line. /proc/PID/environ is readable by the same user and root only.
  spokeLauncher = pkgs.writeShellScript "narhub-spoke" ''
    set -eu
    NARHUB_REDIS_URL=$(cat "$CREDENTIALS_DIRECTORY/redis-url")
    export NARHUB_REDIS_URL
    exec ${spokeCfg.package}/bin/narhub "$@"
  '';

  # The admin commands as the service user, on the service's config (hence its data directory
  # and admin token), talking to the service's own address.
  localUrl =
    let
      host =
        if cfg.address == "0.0.0.0" then
          "127.0.0.1"
        else if cfg.address == "::" then
          "[::1]"
        else if isIPv6 cfg.address then
          "[${cfg.address}]"
        else
          cfg.address;
    in
    "http://${host}:${toString cfg.port}";
  adminWrapper = pkgs.writeShellScriptBin "narhub-admin" ''
    set -eu
    case "''${1-}" in
      cache | token | reindex | project | eval | build) set -- "$@" --config ${checkedConfigFile} ;;
    esac
    export NARHUB_SERVER="''${NARHUB_SERVER:-${localUrl}}"
    if [ "$(id -u)" = 0 ]; then
      exec ${pkgs.util-linux}/bin/runuser -u narhub -- ${cfg.package}/bin/narhub "$@"
    fi
    exec ${cfg.package}/bin/narhub "$@"
  '';

  # Shared by both services. V8 compiles JavaScript at run time, so MemoryDenyWriteExecute
  # stays off; builds happen in nix-daemon's sandbox, never in these processes.
  hardening = {
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    DevicePolicy = "closed";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    RemoveIPC = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    UMask = "0077";
  };

  cacheModule =
    { name, ... }:
    {
      freeformType = types.attrsOf jsonValue;
      options = {
        private = mkOption {
          type = types.bool;
          default = false;
          description = "Whether reading the cache needs a read token. Public caches are readable by anyone.";
        };
        priority = mkOption {
          type = types.ints.unsigned;
          default = 40;
          description = "The `Priority` announced in `nix-cache-info`; Nix prefers substituters with lower values.";
        };
        signingKeyFile = mkOption {
          type = types.nullOr secretPath;
          default = null;
          example = "/var/lib/secrets/narhub-${name}.secret";
          description = ''
            Nix secret key file (`name:base64`, as written by `nix-store --generate-binary-cache-key`
            or `narhub keygen`) to sign the cache's paths with. It reaches the service through
            systemd's `LoadCredential`, so it may be readable by root only. When null, narhub
            generates a key in its data directory the first time it creates the cache.
          '';
        };
      };
    };

  s3Module = {
    freeformType = types.attrsOf jsonValue;
    options = {
      bucket = mkOption {
        type = types.str;
        description = "S3 bucket holding the caches' files.";
      };
      region = mkOption {
        type = types.str;
        default = "us-east-1";
        description = "S3 region.";
      };
      endpoint = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "https://s3.eu-central-003.backblazeb2.com";
        description = "Endpoint URL of an S3-compatible service; AWS when null.";
      };
      prefix = mkOption {
        type = types.str;
        default = "";
        example = "narhub/";
        description = "Key prefix inside the bucket.";
      };
      forcePathStyle = mkOption {
        type = types.bool;
        default = false;
        description = "Use path-style URLs (`endpoint/bucket/key`), which most self-hosted S3 servers (MinIO, Garage) need.";
      };
      accessKeyIdFile = mkOption {
        type = types.nullOr secretPath;
        default = null;
        description = "File holding the S3 access key id. Goes with {option}`secretAccessKeyFile`.";
      };
      secretAccessKeyFile = mkOption {
        type = types.nullOr secretPath;
        default = null;
        description = "File holding the S3 secret access key. Goes with {option}`accessKeyIdFile`.";
      };
      sessionTokenFile = mkOption {
        type = types.nullOr secretPath;
        default = null;
        description = "File holding an S3 session token, for temporary credentials.";
      };
      credentialsFile = mkOption {
        type = types.nullOr secretPath;
        default = null;
        example = "/var/lib/secrets/narhub-aws-credentials";
        description = ''
          An AWS shared credentials file (`[default]` with `aws_access_key_id` and
          `aws_secret_access_key`), used through the SDK's default credential chain
          (`AWS_SHARED_CREDENTIALS_FILE`). An alternative to the separate key files; when none is
          set, the chain's other sources apply (e.g. an EC2 instance role).
        '';
      };
    };
  };
in
{
  options.services.narhub = {
    enable = mkEnableOption "narhub, a Nix binary cache (and build hub)";

    package = lib.mkPackageOption pkgs "narhub" { };

    address = mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "0.0.0.0";
      description = "Address to listen on (IPv4 or IPv6, without brackets). Put a TLS proxy in front for public use.";
    };

    port = mkOption {
      type = types.port;
      default = 8080;
      description = "TCP port to listen on.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open {option}`port` in the firewall.";
    };

    publicUrl = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "https://cache.example.org";
      description = "Base URL clients use, for the substituter URLs narhub prints.";
    };

    dataDir = mkOption {
      type = types.pathWith {
        inStore = false;
        absolute = true;
      };
      default = "/var/lib/narhub";
      description = ''
        Database, generated keys and (with local storage) the caches' files. Under `/var/lib` it
        is the unit's `StateDirectory`; elsewhere it is created by tmpfiles and made writable
        with `ReadWritePaths`.
      '';
    };

    logLevel = mkOption {
      type = types.enum [
        "fatal"
        "error"
        "warn"
        "info"
        "debug"
        "trace"
        "silent"
      ];
      default = "info";
      description = "Log level (JSON lines on stdout, into the journal).";
    };

    maxNarSize = mkOption {
      type = types.ints.positive;
      default = 68719476736;
      description = "Largest NAR upload accepted, in bytes (default 64 GiB).";
    };

    gc = {
      pendingGracePeriod = mkOption {
        type = types.ints.unsigned;
        default = 86400;
        description = ''
          Seconds a NAR upload that no narinfo has claimed yet (an interrupted `nix copy`) is
          kept. narhub's garbage collection covers only such unclaimed uploads and the NAR
          files replaced by their zstd recompression (see {option}`gc.supersededGracePeriod`).
          It never deletes committed store paths: there is no retention, age- or size-based
          collection of paths yet.
        '';
      };
      supersededGracePeriod = mkOption {
        type = types.ints.unsigned;
        default = 3456000;
        description = ''
          Seconds a NAR file replaced by its zstd recompression (a cache's `recompressToZstd`)
          is still served, for clients holding the old narinfo (Nix caches narinfos for 30
          days; the default is 40).
        '';
      };
      interval = mkOption {
        type = types.ints.positive;
        default = 3600;
        description = "Seconds between two garbage-collection sweeps (see {option}`gc.pendingGracePeriod`).";
      };
    };

    caches = mkOption {
      type = types.attrsOf (types.submodule cacheModule);
      default = { };
      example = literalExpression ''
        {
          main = { signingKeyFile = "/var/lib/secrets/narhub-main.secret"; };
          team = { private = true; priority = 30; };
        }
      '';
      description = ''
        Caches to create (or update) at every start, by name (`a-z 0-9 - _`). Other cache
        settings narhub knows (e.g. `redirectNars`, `recompressToZstd`) may be set here too;
        `check-config` validates them. When empty, narhub creates a public cache `main` on its
        first start. narhub has no upstream (pull-through) caches yet, so there is no option
        for them.
      '';
    };

    storage = {
      type = mkOption {
        type = types.enum [
          "local"
          "s3"
        ];
        default = "local";
        description = "Where the caches' files live: the local disk or an S3 bucket.";
      };
      local.path = mkOption {
        type = types.nullOr (
          types.pathWith {
            inStore = false;
            absolute = true;
          }
        );
        default = null;
        description = "Directory for the files with local storage; `<dataDir>/store` when null. Made writable for the service.";
      };
      s3 = mkOption {
        type = types.nullOr (types.submodule s3Module);
        default = null;
        description = "S3 settings, needed when {option}`storage.type` is `s3`. Credentials are files, passed with `LoadCredential`.";
      };
    };

    hub = {
      enable = mkEnableOption "the build hub (evaluates projects and queues builds for spokes); it needs Redis";

      redisUrl = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "redis://redis.internal:6379/0";
        description = "URL of an external Redis without a password. Use {option}`hub.redisUrlFile` when it carries one.";
      };

      redisUrlFile = mkOption {
        type = types.nullOr secretPath;
        default = null;
        example = "/var/lib/secrets/narhub-redis-url";
        description = "File holding the URL of an external Redis (with its password), passed with `LoadCredential`.";
      };

      redis = {
        createLocally = mkOption {
          type = types.bool;
          default = cfg.hub.redisUrl == null && cfg.hub.redisUrlFile == null;
          defaultText = literalExpression "hub.redisUrl == null && hub.redisUrlFile == null";
          description = ''
            Run a local Redis for the hub (`services.redis.servers.narhub`): persistence on (RDB
            snapshots and the append-only file) and `maxmemory-policy noeviction`, since the
            queues must never lose a key. The hub reaches it through its Unix socket
            (`redis://localhost/0?path=/run/redis-narhub/redis.sock`), as a member of the
            socket's group.
          '';
        };
        port = mkOption {
          type = types.port;
          default = 0;
          example = 6379;
          description = ''
            TCP port of the local Redis, for spokes on other machines (they connect to Redis
            directly). 0 keeps Redis on its Unix socket only, enough for spokes on this machine.
            A TCP port needs {option}`hub.redis.passwordFile`.
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
            e.g. from `openssl rand -hex 32`. Spokes then use
            `redis://:PASSWORD@HUB:PORT/0` in their {option}`services.narhub-spoke.redisUrlFile`.
          '';
        };
        openFirewall = mkOption {
          type = types.bool;
          default = false;
          description = "Whether to open {option}`hub.redis.port` in the firewall, for remote spokes.";
        };
      };
    };

    settings = mkOption {
      type = types.attrsOf jsonValue;
      default = { };
      example = literalExpression ''
        {
          maxSmallFileSize = 67108864;
          zstd.level = 9;
          hub = { evalWorkers = 2; buildTimeout = 7200; };
        }
      '';
      description = ''
        Further settings of narhub's JSON config (see `src/config/schema.ts` or the README),
        merged over what the options above produce. Unknown keys fail the system build, since
        the result goes through `narhub check-config`. Never put a secret here: this ends up
        in the Nix store; use the `*File` options.
      '';
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
      description = "URL of the hub's Redis, without a password. Use {option}`redisUrlFile` when it carries one.";
    };

    redisUrlFile = mkOption {
      type = types.nullOr secretPath;
      default = null;
      example = "/var/lib/secrets/narhub-redis-url";
      description = "File holding the hub's Redis URL with its password (`redis://:PASSWORD@hub:6379/0`), passed with `LoadCredential`.";
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
      description = "System features this spoke offers (`requiredSystemFeatures` of the derivations it may take). The local nix-daemon must offer them too.";
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
        spoke builds in its own process, so the unit allows it the user namespaces and mount
        system calls of Nix's sandbox, and the directory is made writable.
      '';
    };

    timeout = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      description = "Default wall-clock limit of a build in seconds, for jobs that set none; the spoke's default when null.";
    };

    maxSilent = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      description = "Default limit in seconds on a build printing nothing, for jobs that set none; the spoke's default when null.";
    };
  };

  config = mkMerge [
    (mkIf cfg.enable {
      assertions = [
        {
          assertion = cfg.storage.type == "s3" -> s3 != null;
          message = "services.narhub.storage.type = \"s3\" needs services.narhub.storage.s3.bucket (and its other settings).";
        }
        {
          assertion = isS3 -> ((s3.accessKeyIdFile == null) == (s3.secretAccessKeyFile == null));
          message = "services.narhub.storage.s3.accessKeyIdFile and secretAccessKeyFile go together.";
        }
        {
          assertion = isS3 -> (s3.sessionTokenFile != null -> s3.accessKeyIdFile != null);
          message = "services.narhub.storage.s3.sessionTokenFile needs accessKeyIdFile and secretAccessKeyFile.";
        }
        {
          assertion = isS3 -> (s3.credentialsFile == null || s3.accessKeyIdFile == null);
          message = "services.narhub.storage.s3: give either credentialsFile or accessKeyIdFile/secretAccessKeyFile, not both.";
        }
        {
          assertion = lib.all (name: builtins.match "[a-z0-9][a-z0-9_-]{0,62}" name != null) (builtins.attrNames cfg.caches);
          message = "services.narhub.caches: a cache name is 1-63 of a-z, 0-9, - and _, starting with a letter or digit.";
        }
        {
          assertion = !(hub.redisUrl != null && hub.redisUrlFile != null);
          message = "services.narhub.hub: set redisUrl or redisUrlFile, not both.";
        }
        {
          assertion = hub.enable -> (hub.redis.createLocally || hub.redisUrl != null || hub.redisUrlFile != null);
          message = "services.narhub.hub needs Redis: keep hub.redis.createLocally or set hub.redisUrl / hub.redisUrlFile.";
        }
        {
          assertion = hub.enable -> !(hub.redis.createLocally && (hub.redisUrl != null || hub.redisUrlFile != null));
          message = "services.narhub.hub.redis.createLocally and an external hub.redisUrl / hub.redisUrlFile exclude each other.";
        }
        {
          assertion = localRedis -> (hub.redis.port != 0 -> hub.redis.passwordFile != null);
          message = "services.narhub.hub.redis.port exposes Redis over TCP: set services.narhub.hub.redis.passwordFile.";
        }
      ];

      services.narhub.generatedConfig = generatedConfig;
      services.narhub.configFile = checkedConfigFile;

      users.users.narhub = {
        isSystemUser = true;
        group = "narhub";
        home = cfg.dataDir;
        description = "narhub binary cache";
        # The Redis socket is mode 660, owned by the server's group.
        extraGroups = optional localRedis (redisServer.group or redisServer.user);
      };
      users.groups.narhub = { };

      environment.systemPackages = [ adminWrapper ];

      networking.firewall.allowedTCPPorts =
        optional cfg.openFirewall cfg.port
        ++ optional (localRedis && hub.redis.openFirewall && hub.redis.port != 0) hub.redis.port;

      systemd.tmpfiles.rules =
        optional (!dataDirIsState) "d ${cfg.dataDir} 0750 narhub narhub - -"
        ++ optional (cfg.storage.type == "local" && cfg.storage.local.path != null) "d ${cfg.storage.local.path} 0750 narhub narhub - -";

      services.redis.servers.narhub = mkIf localRedis {
        enable = true;
        inherit (hub.redis) port;
        inherit (hub.redis) bind;
        requirePassFile = hub.redis.passwordFile;
        # Queues must survive a restart and never lose keys to eviction.
        appendOnly = true;
        settings.maxmemory-policy = "noeviction";
      };

      systemd.services.narhub = {
        description = "narhub Nix binary cache" + lib.optionalString hub.enable " and build hub";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ] ++ optional localRedis "redis-narhub.service";
        requires = optional localRedis "redis-narhub.service";
        path = optionals hub.enable [
          config.nix.package
          pkgs.git
        ];
        restartTriggers = [ checkedConfigFile ];
        environment =
          {
            HOME = cfg.dataDir;
            XDG_CACHE_HOME = "/var/cache/narhub";
            NODE_ENV = "production";
          }
          // optionalAttrs (isS3 && s3.credentialsFile != null) {
            AWS_SHARED_CREDENTIALS_FILE = cred "s3-credentials";
          };
        serviceConfig = hardening // {
          Type = "simple";
          ExecStartPre = optional redisPassword redisUrlScript;
          ExecStart = "${cfg.package}/bin/narhub serve --config ${checkedConfigFile}";
          User = "narhub";
          Group = "narhub";
          LoadCredential = mapAttrsToList (name: file: "${name}:${file}") credentials;
          StateDirectory = optional dataDirIsState stateDirectory;
          StateDirectoryMode = "0750";
          RuntimeDirectory = "narhub";
          RuntimeDirectoryMode = "0700";
          CacheDirectory = "narhub";
          WorkingDirectory = cfg.dataDir;
          ReadWritePaths =
            optional (!dataDirIsState) cfg.dataDir
            ++ optional (cfg.storage.type == "local" && cfg.storage.local.path != null) cfg.storage.local.path;
          Restart = "on-failure";
          RestartSec = 5;
          # SIGTERM drains in-flight uploads before the process exits.
          TimeoutStopSec = 120;
          LimitNOFILE = 65536;
          # Fastify lists the machine's addresses (getifaddrs, over netlink) when it listens on a
          # wildcard address; everything else needs IP and Unix sockets only.
          RestrictAddressFamilies = [
            "AF_INET"
            "AF_INET6"
            "AF_UNIX"
          ] ++ optional wildcardListen "AF_NETLINK";
          CapabilityBoundingSet = if cfg.port < 1024 then [ "CAP_NET_BIND_SERVICE" ] else "";
          AmbientCapabilities = optional (cfg.port < 1024) "CAP_NET_BIND_SERVICE";
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
      ];

      systemd.tmpfiles.rules = optional chrootStore "d ${chrootStoreDir} 0750 narhub-spoke narhub-spoke - -";

      users.users.narhub-spoke = {
        isSystemUser = true;
        group = "narhub-spoke";
        home = "/var/lib/narhub-spoke";
        description = "narhub build spoke";
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
        wants = [ "network-online.target" ];
        after = [
          "network-online.target"
          "nix-daemon.socket"
        ];
        path = [ config.nix.package ];
        environment = {
          HOME = "/var/lib/narhub-spoke";
          XDG_CACHE_HOME = "/var/cache/narhub-spoke";
          # The spoke's private directory (its netrc with the token, logs being collected) must
          # be visible to nix-daemon, which substitutes from the hub's cache with that netrc:
          # not the unit's private /tmp, but its RuntimeDirectory (0700, gone when it stops).
          TMPDIR = "/run/narhub-spoke";
          NODE_ENV = "production";
        } // optionalAttrs (spokeCfg.store == null) { NIX_REMOTE = "daemon"; };
        serviceConfig = hardening // optionalAttrs chrootStore {
          # Nix's build sandbox, run by the spoke itself.
          RestrictNamespaces = false;
          SystemCallFilter = [
            "@system-service"
            "@mount"
            "@privileged"
          ];
          ReadWritePaths = [ chrootStoreDir ];
        } // {
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
          ] ++ optional (spokeCfg.redisUrlFile != null) "redis-url:${spokeCfg.redisUrlFile}";
          StateDirectory = "narhub-spoke";
          StateDirectoryMode = "0750";
          RuntimeDirectory = "narhub-spoke";
          RuntimeDirectoryMode = "0700";
          CacheDirectory = "narhub-spoke";
          WorkingDirectory = "/var/lib/narhub-spoke";
          Restart = "always";
          RestartSec = 10;
          # SIGTERM to the spoke only, so it can hand its running jobs back; then the rest.
          KillMode = "mixed";
          TimeoutStopSec = 300;
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
