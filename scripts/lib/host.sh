# Host set-up shared by scripts/up and scripts/test: packages, kernel settings, id ranges,
# and the host's LXD daemon. Every function is idempotent: a second run changes nothing.
# shellcheck shell=bash

SSP_PACKAGES=(lxd lxd-client lxcfs btrfs-progs debootstrap debian-archive-keyring gpgv busybox-static
  openssh-client iproute2 iptables dnsmasq-base procps psmisc kmod util-linux ca-certificates acl)

ssp_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
ssp_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ssp_require_root() {
  [ "$(id -u)" = 0 ] || ssp_die "run this as root (it installs packages and configures LXD)"
}

# Installs missing Debian packages (no network is needed when all are present).
ssp_install_packages() {
  local missing=() pkg
  for pkg in "${SSP_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  ssp_log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A Rust toolchain new enough for the workspace (Debian 12's own cargo is too old).
ssp_require_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || ssp_die "cargo not found: install Rust >= 1.85 with rustup (https://rustup.rs), then run this again"
}

# Kernel settings a container host needs. With Debian's defaults
# (fs.inotify.max_user_instances=128) only ~23 systemd containers stay up; the rest die at
# boot with "Too many open files". Values follow LXD's production set-up.
SSP_SYSCTLS=(
  fs.inotify.max_user_instances=1048576
  fs.inotify.max_user_watches=1048576
  fs.inotify.max_queued_events=1048576
  kernel.keys.maxkeys=2000
  kernel.keys.maxbytes=2000000
  vm.max_map_count=262144
  net.ipv4.neigh.default.gc_thresh3=8192
  net.ipv6.neigh.default.gc_thresh3=8192
  kernel.dmesg_restrict=1
)

ssp_apply_sysctls() {
  local conf=/etc/sysctl.d/60-ssp.conf tmp setting key want have
  tmp=$(mktemp)
  { echo "# Written by ssp (scripts/lib/host.sh): settings a container host needs."
    printf '%s\n' "${SSP_SYSCTLS[@]}"; } >"$tmp"
  if ! cmp -s "$tmp" "$conf" 2>/dev/null; then
    mkdir -p /etc/sysctl.d && install -m 0644 "$tmp" "$conf"
  fi
  rm -f "$tmp"
  for setting in "${SSP_SYSCTLS[@]}"; do
    key=${setting%%=*} want=${setting#*=}
    have=$(sysctl -n "$key" 2>/dev/null) || continue
    if [ "$key" = kernel.dmesg_restrict ]; then
      [ "$have" = "$want" ] || sysctl -qw "$setting" >/dev/null 2>&1 || true
    elif [ "$have" -lt "$want" ] 2>/dev/null; then
      sysctl -qw "$setting" >/dev/null 2>&1 || ssp_log "warning: could not set $setting (have $have)"
    fi
  done
  have=$(sysctl -n fs.inotify.max_user_instances)
  [ "$have" -ge 1024 ] || ssp_die "fs.inotify.max_user_instances is $have: containers would die at boot; set it in $conf"
}

# Unprivileged containers with isolated idmaps each take 65536 host ids from root's range:
# a billion ids leaves room for thousands of containers. A second, smaller block right above
# it holds users' share identities (user N is host uid/gid 1001000000+N, mapped onto uid 1000
# in their containers, see crates/ssp-server/src/storage): LXD 5.0.2 ignores ranges under
# 65536 ids when it hands out isolated ranges, and a block above the main range keeps the
# raw map entries from pulling new ranges down into it. LXD reads these files at start.
SSP_SHARE_IDS='root:1001000000:65535'
ssp_ensure_subids() {
  local file
  for file in /etc/subuid /etc/subgid; do
    touch "$file"
    if ! grep -qx 'root:1000000:1000000000' "$file" || ! grep -qx "$SSP_SHARE_IDS" "$file"; then
      sed -i '/^root:/d' "$file"
      printf '%s\n' 'root:1000000:1000000000' "$SSP_SHARE_IDS" >>"$file"
    fi
  done
}

ssp_have_systemd() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }

# lxcfs gives each container a /proc/meminfo, /proc/cpuinfo, /proc/stat, /proc/uptime, … and
# /sys/devices/system/cpu that show its own limits, so `free`, `nproc` and `top` inside tell
# the truth instead of showing the whole host. It is LXC's mount hook (the lxcfs package's
# /usr/share/lxc/config/common.conf.d/00-lxcfs.conf, which LXD 5.0.2 includes) that mounts
# lxcfs's files, at each container start, if lxcfs is running then: tried here, an lxcfs
# started after LXD serves every container started afterwards, with no LXD restart, while
# a container already running keeps the host's view until it restarts. So this runs before
# ssp_start_lxd, which starts the containers LXD brings back at boot.
SSP_LXCFS_DIR=/var/lib/lxcfs
ssp_lxcfs_running() { mountpoint -q "$SSP_LXCFS_DIR" && [ -r "$SSP_LXCFS_DIR/proc/meminfo" ]; }
ssp_start_lxcfs() {
  if ssp_lxcfs_running; then return 0; fi
  ssp_log "starting lxcfs"
  if ssp_have_systemd; then
    systemctl enable --now lxcfs.service >/dev/null 2>&1 || systemctl start lxcfs
  else
    # An lxcfs that died leaves its mount behind, answering "Transport endpoint is not connected"
    # to everything, mkdir included: take it away first.
    umount -l "$SSP_LXCFS_DIR" 2>/dev/null || true
    mkdir -p "$SSP_LXCFS_DIR" /var/log/lxcfs
    setsid lxcfs "$SSP_LXCFS_DIR" </dev/null >>/var/log/lxcfs/lxcfs.log 2>&1 &
  fi
  local tries
  for tries in $(seq 50); do
    ssp_lxcfs_running && return 0
    sleep 0.2
  done
  ssp_die "lxcfs did not start (tried $tries times): see /var/log/lxcfs/lxcfs.log"
}

# Starts the host's LXD daemon if it is not answering.
ssp_start_lxd() {
  if lxc info >/dev/null 2>&1; then return 0; fi
  ssp_log "starting LXD"
  if ssp_have_systemd; then
    systemctl enable --now lxd.socket lxd.service >/dev/null 2>&1 || systemctl start lxd
  else
    mkdir -p /var/log/lxd
    setsid lxd --group root --logfile /var/log/lxd/lxd.log </dev/null >>/var/log/lxd/lxd.out 2>&1 &
  fi
  lxd waitready --timeout 120 || ssp_die "LXD did not start: see /var/log/lxd/lxd.log"
}

# A 10.x.y.0/24 that no route or address on the host overlaps (LXD's automatic choice
# would ping random private addresses to find one).
ssp_free_subnet() {
  local x y taken
  taken=$(ip -4 -o route show table all; ip -4 -o addr)
  grep -qE '(^| )10\.0\.0\.0/8' <<<"$taken" && return 1
  for x in 87 88 89 90 91 92 93 94 95 96 97 98 99; do
    grep -qE "(^| )10\.$x\.0\.0/16" <<<"$taken" && continue
    for y in 10 20 30 40 50; do
      grep -qE "(^| )10\.$x\.$y\." <<<"$taken" || { echo "10.$x.$y"; return 0; }
    done
  done
  return 1
}

# The host's LXD set up for ssp: a btrfs pool on a loop file (new containers are
# copy-on-write clones), a bridge with an explicitly chosen subnet (LXD's automatic choice
# probes random private addresses), and a default profile using both. Existing objects are
# kept as they are.
SSP_POOL=${SSP_POOL:-default}
SSP_BRIDGE=${SSP_BRIDGE:-sspbr0}
ssp_init_lxd() {
  if ! lxc storage show "$SSP_POOL" >/dev/null 2>&1; then
    ssp_log "creating btrfs storage pool $SSP_POOL (${SSP_POOL_SIZE:-40GiB} loop file)"
    lxc storage create "$SSP_POOL" btrfs size="${SSP_POOL_SIZE:-40GiB}" >/dev/null
  fi
  if ! lxc network show "$SSP_BRIDGE" >/dev/null 2>&1; then
    local subnet
    subnet=$(ssp_free_subnet) || ssp_die "no free 10.x.y.0/24 for the bridge: set one with lxc network create"
    ssp_log "creating bridge $SSP_BRIDGE ($subnet.1/24)"
    lxc network create "$SSP_BRIDGE" ipv4.address="$subnet.1/24" ipv4.nat=true ipv6.address=none >/dev/null
  fi
  local profile
  profile=$(lxc profile show default)
  grep -qE '^  root:' <<<"$profile" || lxc profile device add default root disk path=/ pool="$SSP_POOL" >/dev/null
  grep -qE '^  eth0:' <<<"$profile" || lxc profile device add default eth0 nic network="$SSP_BRIDGE" name=eth0 >/dev/null
}
