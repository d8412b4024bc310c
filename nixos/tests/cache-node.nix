# The narhub cache node the VM tests share (cache.nix, push.nix): narhub on port 8080, open in
# the firewall, with one cache `main` signed by a throwaway key pair (`narhub keygen
# narhub-vm-test-1`), for tests only. Real signing keys never go into the Nix store; the module
# refuses store paths for them.
rec {
  secretKey =
    "narhub-vm-test-1:AoqxGUQtouKHa0NpGoPpx0XjJbVQdM3cqeVg62n5fcLsUK8NhqIUS7W6+y7wZgpDW3XBZ1JmKPQtHawIYViCWA==";
  publicKey = "narhub-vm-test-1:7FCvDYaiFEu1uvsu8GYKQ1t1wWdSZij0LR2sCGFYglg=";

  node =
    { pkgs, ... }:
    {
      environment.etc."narhub/main.secret" = {
        text = secretKey;
        mode = "0400";
      };
      services.narhub = {
        enable = true;
        settings.listen = "0.0.0.0:8080";
        openFirewall = true;
        caches.main.signingKeyFile = "/etc/narhub/main.secret";
      };
      environment.systemPackages = [ pkgs.curl ];
    };
}
