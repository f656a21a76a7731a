#!/usr/bin/env bash
# Provisions a Debian 12 machine with snapfs and a containerd that uses it:
# Node.js 20 if missing, the system packages and the build (scripts/setup),
# `snapfs serve` as a systemd unit, containerd's proxy_plugins entry, and
# then the end-to-end check (check.sh). Idempotent; run as root.
#
# The vagrant box runs it as it is. Without systemd (a container, a CI
# machine) the two daemons are started directly instead. Every path can be
# moved with an environment variable, so that the test suite can run it on
# a machine whose own containerd it must not touch:
#   SNAPFS_SOURCE       the snapfs checkout (default: this script's)
#   SNAPFS_ROOT         snapshotter root (/var/lib/snapfs)
#   SNAPFS_ADDRESS      snapfs serve's socket (/run/snapfs/snapfs.sock)
#   CONTAINERD_CONFIG   containerd's config (/etc/containerd/config.toml)
#   CONTAINERD_ADDRESS  containerd's socket (/run/containerd/containerd.sock)
#   CONTAINERD_ROOT, CONTAINERD_STATE  (/var/lib/containerd, /run/containerd)
#   PROVISION_STATE     logs and pid files of daemons started without systemd (/run/snapfs-provision)
set -euo pipefail

SNAPFS_SOURCE=${SNAPFS_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
SNAPFS_ROOT=${SNAPFS_ROOT:-/var/lib/snapfs}
SNAPFS_ADDRESS=${SNAPFS_ADDRESS:-/run/snapfs/snapfs.sock}
CONTAINERD_CONFIG=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
CONTAINERD_ADDRESS=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
CONTAINERD_ROOT=${CONTAINERD_ROOT:-/var/lib/containerd}
CONTAINERD_STATE=${CONTAINERD_STATE:-/run/containerd}
PROVISION_STATE=${PROVISION_STATE:-/run/snapfs-provision}

say() { echo "provision: $*"; }
[[ $(id -u) -eq 0 ]] || { echo "provision: run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

# Node.js 20 or newer (Debian 12 ships 18): from NodeSource when missing.
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; then
  say "installing Node.js 20 from NodeSource"
  apt-get update -qq
  apt-get install -y -qq ca-certificates curl gnupg >/dev/null
  curl -fsSL https://deb.nodesource.com/setup_20.x | bash - >/dev/null
  apt-get install -y -qq nodejs >/dev/null
fi

say "installing snapfs from $SNAPFS_SOURCE"
missing=()
for p in containerd runc busybox-static; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
"$SNAPFS_SOURCE/scripts/setup" # system packages, npm ci, /usr/local/bin/snapfs for mount(8)

say "configuring containerd ($CONTAINERD_CONFIG) with the snapfs proxy plugin"
mkdir -p "$(dirname "$CONTAINERD_CONFIG")"
cat >"$CONTAINERD_CONFIG" <<TOML
version = 2
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
[grpc]
  address = "$CONTAINERD_ADDRESS"
[ttrpc]
  address = "$CONTAINERD_ADDRESS.ttrpc"
[proxy_plugins]
  [proxy_plugins.snapfs]
    type = "snapshot"
    address = "$SNAPFS_ADDRESS"
TOML

ready() { # waits for a unix socket to answer
  for _ in $(seq 300); do
    if [[ -S $1 ]] && python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "provision: nothing answers on $1" >&2
  return 1
}

if [[ -d /run/systemd/system ]]; then
  say "installing the systemd unit snapfs.service"
  cat >/etc/systemd/system/snapfs.service <<UNIT
[Unit]
Description=snapfs snapshotter for containerd (proxy plugin)
Before=containerd.service

[Service]
ExecStart=/usr/local/bin/snapfs --root $SNAPFS_ROOT serve --address $SNAPFS_ADDRESS
Restart=always
# FUSE daemons of mounted snapshots are children of mount(8), not of this service.
KillMode=process

[Install]
WantedBy=multi-user.target containerd.service
UNIT
  systemctl daemon-reload
  systemctl enable --now snapfs.service
  systemctl restart containerd.service
else
  say "no systemd: starting snapfs serve and containerd directly (logs in $PROVISION_STATE)"
  mkdir -p "$PROVISION_STATE"
  for pidfile in "$PROVISION_STATE"/*.pid; do
    [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null && sleep 1
    rm -f "$pidfile"
  done
  setsid /usr/local/bin/snapfs --root "$SNAPFS_ROOT" serve --address "$SNAPFS_ADDRESS" \
    </dev/null >>"$PROVISION_STATE/snapfs.log" 2>&1 &
  echo $! >"$PROVISION_STATE/snapfs.pid"
  ready "$SNAPFS_ADDRESS"
  setsid containerd --config "$CONTAINERD_CONFIG" </dev/null >>"$PROVISION_STATE/containerd.log" 2>&1 &
  echo $! >"$PROVISION_STATE/containerd.pid"
fi
ready "$SNAPFS_ADDRESS"
ready "$CONTAINERD_ADDRESS"

CONTAINERD_ADDRESS=$CONTAINERD_ADDRESS "$SNAPFS_SOURCE/vagrant/check.sh"
