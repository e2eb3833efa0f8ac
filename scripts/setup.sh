#!/usr/bin/env bash
# Install what plexgate's tests and demo need on Debian 12 (bookworm).
# Idempotent: a second run only checks and changes nothing.
#   scripts/setup.sh          # as root (or with passwordless sudo)
# Works without a terminal (CI=true, no stdin).
set -euo pipefail

PACKAGES=(
  strongswan-swanctl charon-systemd libcharon-extra-plugins strongswan-charon
  strongswan-pki iperf3 iputils-ping tshark tcpdump etcd-server etcd-client
  protobuf-compiler iproute2 python3 openssl nftables conntrack
)

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    die "run as root (network namespaces and apt need it), or give passwordless sudo"
  fi
fi

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# --- Debian packages -------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
  log "installing: ${missing[*]}"
  # Do not let tshark's package ask whether non-root users may capture.
  echo 'wireshark-common wireshark-common/install-setuid boolean false' \
    | "${SUDO[@]}" debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  # Wait (bounded) for another apt/dpkg run to finish instead of failing.
  APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q
       -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef
       -o Dpkg::Options::=--force-confold)
  "${APT[@]}" update </dev/null
  "${APT[@]}" install "${missing[@]}" </dev/null
else
  log "Debian packages: all ${#PACKAGES[@]} present"
fi

# --- tools the lab checks for (plexgate-lab check_prerequisites) ------------
for f in /usr/lib/ipsec/charon /usr/sbin/swanctl; do
  [ -x "$f" ] || die "$f missing after install (strongswan-charon / strongswan-swanctl)"
done
for t in iperf3 tshark tcpdump ip ss unshare ping etcd etcdctl protoc python3 openssl nft conntrack; do
  command -v "$t" >/dev/null 2>&1 || die "$t missing after install"
done

# --- no system-wide charon ---------------------------------------------------
# The lab runs one charon per network namespace, each with its own /run. A stock
# Debian charon in the root namespace would not steal the lab's ports (they are
# per namespace) but it would hold UDP 500/4500 and install policies in the root
# namespace, so it must not run as a service. Without systemd (containers) the
# packages start nothing.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  for unit in strongswan.service strongswan-starter.service; do
    if systemctl list-unit-files "$unit" >/dev/null 2>&1 \
       && { systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit" 2>/dev/null; }; then
      log "disabling system service $unit"
      "${SUDO[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
fi
root_ns=$(readlink /proc/1/ns/net 2>/dev/null || true)
for pid in $(pgrep -x 'charon|charon-systemd' 2>/dev/null || true); do
  if [ -n "$root_ns" ] && [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$root_ns" ]; then
    log "WARNING: a charon (pid $pid) runs in the root network namespace; it is not the lab's."
    log "         stop it (systemctl stop strongswan) if IKE tests on the host misbehave"
  fi
done

# --- /dev/net/tun --------------------------------------------------------------
if [ ! -c /dev/net/tun ]; then
  log "creating /dev/net/tun"
  "${SUDO[@]}" mkdir -p /dev/net
  "${SUDO[@]}" mknod /dev/net/tun c 10 200 2>/dev/null || true
  "${SUDO[@]}" chmod 0666 /dev/net/tun 2>/dev/null || true
fi
[ -c /dev/net/tun ] || die "/dev/net/tun is not available (needed by kernel-libipsec and plexgate)"

# --- network namespaces work -------------------------------------------------
probe="plx-setup-probe-$$"
if "${SUDO[@]}" ip netns add "$probe" 2>/dev/null; then
  "${SUDO[@]}" ip netns del "$probe"
else
  die "cannot create network namespaces (need root with CAP_SYS_ADMIN)"
fi

# --- Rust toolchain components -----------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
if command -v rustup >/dev/null 2>&1; then
  have=$(rustup component list --installed 2>/dev/null || true)
  need=()
  grep -q '^clippy' <<<"$have" || need+=(clippy)
  grep -q '^rustfmt' <<<"$have" || need+=(rustfmt)
  if [ ${#need[@]} -gt 0 ]; then
    log "adding rust components: ${need[*]}"
    rustup component add "${need[@]}"
  fi
else
  cargo clippy --version >/dev/null 2>&1 || die "cargo clippy missing and no rustup to add it"
  cargo fmt --version >/dev/null 2>&1 || die "cargo fmt missing and no rustup to add it"
fi

# --- key file modes -------------------------------------------------------------
# Git keeps no file modes: secrets come out of a clone world-readable, and
# `plexgate policy check` (rightly) refuses them. These are example/test keys only.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for f in "$repo"/keys/example/*.psk "$repo"/keys/example/*.key "$repo"/keys/test/private/* "$repo"/keys/test/untrusted/*key* "$repo"/keys/test/formats/*; do
  [ -f "$f" ] && chmod 600 "$f"
done

log "ok: strongSwan $(dpkg-query -W -f='${Version}' strongswan-charon), $(iperf3 --version | head -n1), $(cargo --version)"
