#!/usr/bin/env bash
# Installs current Nix clients from Debian's archive next to Debian 12's Nix 2.8, for the tests
# that drive them (test/e2e/modern-nix.test.ts): trixie's nix-bin (2.26) and sid's (the newest).
#
#   scripts/setup-modern-nix.sh [--refresh] [SUITE...]     (default suites: trixie sid)
#
# Each suite's nix-bin and the libraries it needs are downloaded by apt (with a private state
# directory, so the machine's own apt is untouched), unpacked into $NARHUB_MODERN_NIX_DIR/nix-SUITE
# (default /var/lib/narhub-test), and the nix binary is pointed at that tree's own ld.so and
# libraries with patchelf. No maintainer script runs, nothing is mounted, and the client runs on
# the host's files with no chroot; the tests give it a store directory of its own (`store = DIR`).
# A tree that is already there and runs is kept (idempotent); --refresh downloads it again.
# Needs apt-get, dpkg-deb and patchelf, and Debian's archive (DEBIAN_MIRROR overrides it).
set -euo pipefail

root=${NARHUB_MODERN_NIX_DIR:-/var/lib/narhub-test}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
refresh=0
suites=()
for arg in "$@"; do
  case $arg in
    --refresh) refresh=1 ;;
    -h | --help)
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "setup-modern-nix: unknown option $arg" >&2
      exit 2
      ;;
    *) suites+=("$arg") ;;
  esac
done
[ "${#suites[@]}" -gt 0 ] || suites=(trixie sid)

for tool in apt-get dpkg-deb patchelf; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "setup-modern-nix: $tool is missing (apt-get install -y patchelf)" >&2
    exit 1
  }
done

mkdir -p "$root"
# One setup at a time per directory (several worktrees share it).
exec 9>"$root/.lock"
flock 9

# Every shared object the binary loads must come from its own tree, never the host's.
check_tree() {
  local dest=$1 loaded
  "$dest/bin/nix" --version >/dev/null || return 1
  loaded=$(LD_TRACE_LOADED_OBJECTS=1 "$dest/usr/bin/nix" | awk '$2 == "=>" { print $3 }')
  [ -n "$loaded" ] || return 1
  if grep -v "^$dest/" <<<"$loaded" >&2; then
    echo "setup-modern-nix: the libraries above were not found in $dest" >&2
    return 1
  fi
}

install_suite() {
  local suite=$1 dest=$root/nix-$1 work deb lib
  if [ "$refresh" = 0 ] && [ -x "$dest/bin/nix" ] && check_tree "$dest" 2>/dev/null; then
    echo "setup-modern-nix: $suite: $("$dest/bin/nix" --version) already in $dest"
    return
  fi
  work=$(mktemp -d "$root/.nix-$suite.XXXXXX")
  chmod 755 "$work" # apt downloads as the _apt user
  # shellcheck disable=SC2064 # expand $work now
  trap "rm -rf '$work'" EXIT

  # A private apt: its own sources, lists, cache and an empty dpkg status, so apt fetches the whole
  # dependency closure of nix-bin for that suite and leaves the host's apt state alone.
  mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/apt/preferences.d"
  : >"$work/apt/status"
  echo "deb [signed-by=$keyring] $mirror $suite main" >"$work/apt/sources.list"
  cat >"$work/apt/apt.conf" <<EOF
Dir::Etc::SourceList "$work/apt/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$work/apt/preferences.d";
Dir::State::Lists "$work/apt/lists";
Dir::State::status "$work/apt/status";
Dir::Cache "$work/apt";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Install-Recommends "false";
Acquire::Languages "none";
EOF
  export APT_CONFIG=$work/apt/apt.conf
  apt-get -qq update
  apt-get -qq -y --download-only install nix-bin >/dev/null
  unset APT_CONFIG

  mkdir "$work/root"
  for deb in "$work"/apt/archives/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  dpkg-deb -f "$work"/apt/archives/nix-bin_*.deb Version >"$work/root/nix-bin.version"

  # The tree's paths are baked into the binary, so it is patched for where it will live.
  lib=$dest/usr/lib/x86_64-linux-gnu
  patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$lib" "$work/root/usr/bin/nix"
  # bin/ holds only Nix's commands (symlinks to usr/bin/nix, which picks the command from its name),
  # so putting it first on PATH shadows no other program with the tree's unpatched ones.
  mkdir "$work/root/bin"
  for cmd in "$work"/root/usr/bin/nix*; do
    if [ "$(basename "$cmd")" = nix ] || [ "$(readlink "$cmd")" = nix ]; then
      ln -s ../usr/bin/nix "$work/root/bin/$(basename "$cmd")"
    fi
  done

  rm -rf "$dest.old"
  [ ! -e "$dest" ] || mv "$dest" "$dest.old"
  mv "$work/root" "$dest"
  rm -rf "$dest.old" "$work"
  trap - EXIT
  if ! check_tree "$dest"; then
    rm -rf "$dest"
    echo "setup-modern-nix: $suite: the unpacked nix does not run" >&2
    exit 1
  fi
  echo "setup-modern-nix: $suite: $("$dest/bin/nix" --version) (nix-bin $(cat "$dest/nix-bin.version")) in $dest"
}

for suite in "${suites[@]}"; do install_suite "$suite"; done
