# `services.narhub-push`: every store path this machine produces lands in a narhub cache without
# anyone running `nix copy` (issue 13). Imported by ./module.nix. One unit, `narhub-push`, in
# one of two modes:
# - "watch-store" (the default): `narhub watch-store`, every path that becomes valid in the
#   store (built, substituted, added), read from Nix's database;
# - "post-build-hook": Nix's post-build-hook runs `narhub queue-push`, which only appends the
#   build's outputs to /var/lib/narhub-push/queue (Nix waits for the hook before every further
#   build), and the unit runs `narhub push-daemon` on that queue.
# Either way an entry leaves the on-disk queue only once its closure is in the cache, so a
# restart of the unit or of the machine loses nothing. The token reaches the unit through
# `LoadCredential`, never the store or a command line.
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
    mkEnableOption
    mkIf
    mkOption
    optional
    optionals
    types
    ;

  cfg = config.services.narhub-push;
  watchStore = cfg.mode == "watch-store";

  stateDir = "/var/lib/narhub-push";
  queueDir = "${stateDir}/queue";
  # root for watch-store, which reads Nix's database; a user of its own for push-daemon.
  user = if watchStore then "root" else "narhub-push";

  # A value for an ExecStart argument: systemd expands `%` specifiers and `$` variables itself.
  systemdArg = value: escapeShellArg (builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (toString value));

  # Run by nix-daemon, as root, after every build, with the outputs in $OUT_PATHS (or, where Nix
  # leaves that empty, the derivation in $DRV_PATH): it only queues, in milliseconds.
  postBuildHook = pkgs.writeShellScript "narhub-post-build-hook" ''
    exec ${cfg.package}/bin/narhub queue-push --queue ${queueDir}
  '';

  command =
    (
      if watchStore then
        [
          "watch-store"
          (systemdArg cfg.cacheUrl)
          "--state"
          "${stateDir}/watch-store"
        ]
      else
        [
          "push-daemon"
          (systemdArg cfg.cacheUrl)
          "--queue"
          queueDir
        ]
    )
    ++ [
      "--token-file"
      "%d/token"
      "--jobs"
      (toString cfg.jobs)
    ]
    ++ lib.concatMap (glob: [
      "--include"
      (systemdArg glob)
    ]) cfg.include
    ++ lib.concatMap (glob: [
      "--exclude"
      (systemdArg glob)
    ]) cfg.exclude
    ++ optional cfg.onlyBuiltHere "--only-built-here"
    ++ optional cfg.uploadUpstreamPaths "--upload-upstream-paths"
    ++ optionals (cfg.maxSize != null) [
      "--max-size"
      (systemdArg cfg.maxSize)
    ]
    ++ map systemdArg cfg.extraArgs;
in
{
  options.services.narhub-push = {
    enable = mkEnableOption "pushing this machine's new store paths to a narhub cache (watch-store or post-build-hook)";

    package = lib.mkPackageOption pkgs "narhub" { };

    cacheUrl = mkOption {
      type = types.strMatching "https?://.+";
      example = "https://cache.example.org/main";
      description = "The cache to push to: the narhub server's URL and the cache's name.";
    };

    tokenFile = mkOption {
      type = types.pathWith {
        inStore = false;
        absolute = true;
      };
      example = "/var/lib/secrets/narhub-push-token";
      description = ''
        File holding a narhub token with write access to the cache
        (`narhub token create --cache main --perm write`), passed with `LoadCredential` and read
        once at start: restart the unit after rotating it.
      '';
    };

    mode = mkOption {
      type = types.enum [
        "watch-store"
        "post-build-hook"
      ];
      default = "watch-store";
      description = ''
        `watch-store`: push every path that becomes valid in the local store (built,
        substituted, added), found in Nix's database; the unit runs as root, which that
        database needs, and may write its directory (SQLite readers of a WAL database keep
        their shared index there). Paths registered while it is stopped are pushed when it
        starts again; the first start begins with the paths added from then on.

        `post-build-hook`: only the outputs of builds this machine runs. Sets
        {option}`nix.settings.post-build-hook` to a script running `narhub queue-push`, and the
        unit runs `narhub push-daemon` as the `narhub-push` user. A post-build-hook of your own
        conflicts with it.
      '';
    };

    include = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "myproject-*" ];
      description =
        "Push only paths whose name (after the hash) matches one of these shell globs; every path when empty.";
    };

    exclude = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "*.drv"
        "*-source"
      ];
      description = "Leave out paths whose name matches one of these shell globs.";
    };

    onlyBuiltHere = mkOption {
      type = types.bool;
      default = false;
      description = "Push only paths Nix built on this machine, not substituted, copied or added ones.";
    };

    uploadUpstreamPaths = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Upload paths the cache lacks even when a key its upstreams are trusted under signs them. By
        default such a path is skipped once the cache confirms an upstream has it: narhub fetches it
        from there when a client or an upload needs it.
      '';
    };

    maxSize = mkOption {
      type = types.nullOr (types.strMatching "[0-9]+(\\.[0-9]+)?[KMGTP]?");
      default = null;
      example = "2G";
      description = ''
        Never upload a NAR bigger than this (bytes, or with K, M, G, T, P): such a path the cache
        lacks, and every path that needs it, is left out and named in the log.
      '';
    };

    jobs = mkOption {
      type = types.ints.between 1 64;
      default = 4;
      description = "Paths uploaded at once.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--max-backoff"
        "10m"
        "--interval"
        "30s"
      ];
      description = "Further arguments of `narhub watch-store` or `narhub push-daemon`.";
    };
  };

  config = mkIf cfg.enable {
    nix.settings.post-build-hook = mkIf (!watchStore) postBuildHook;

    users.users.narhub-push = mkIf (!watchStore) {
      isSystemUser = true;
      group = "narhub-push";
      home = stateDir;
      description = "narhub push daemon";
    };
    users.groups.narhub-push = mkIf (!watchStore) { };

    # The queue exists before the first build, owned by the daemon, which deletes the entries
    # the hook (root) writes into it.
    systemd.tmpfiles.rules = optional (!watchStore) "d ${queueDir} 0755 narhub-push narhub-push - -";

    systemd.services.narhub-push = {
      description =
        if watchStore then
          "narhub: push new store paths (watch-store)"
        else
          "narhub: push what Nix's post-build-hook queued";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
        "nix-daemon.socket"
      ];
      path = [ config.nix.package ];
      environment = {
        HOME = stateDir;
        XDG_CACHE_HOME = "/var/cache/narhub-push";
        # Every nix command goes through nix-daemon, which the store's locks belong to.
        NIX_REMOTE = "daemon";
        NODE_ENV = "production";
      };
      serviceConfig = import ./hardening.nix // {
        Type = "simple";
        ExecStart = concatStringsSep " " ([ "${cfg.package}/bin/narhub" ] ++ command);
        User = user;
        Group = user;
        LoadCredential = [ "token:${cfg.tokenFile}" ];
        StateDirectory = "narhub-push";
        # The hook writes into the queue as root; the daemon reads and deletes.
        StateDirectoryMode = "0755";
        CacheDirectory = "narhub-push";
        WorkingDirectory = stateDir;
        ReadWritePaths = optional watchStore "/nix/var/nix/db";
        Restart = "always";
        RestartSec = 10;
        # SIGTERM lets the batch being uploaded finish; a kill after that loses nothing either.
        TimeoutStopSec = 60;
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        CapabilityBoundingSet = "";
      };
    };
  };
}
