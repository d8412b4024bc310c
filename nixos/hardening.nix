# The systemd hardening every narhub unit starts from (narhub, narhub-spoke, narhub-push); each
# unit relaxes only what it needs, and says why. V8 compiles JavaScript at run time, so
# MemoryDenyWriteExecute stays off; builds happen in nix-daemon's sandbox, never in these
# processes.
{
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
}
