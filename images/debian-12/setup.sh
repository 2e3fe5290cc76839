#!/bin/sh
# Configures a freshly debootstrapped Debian tree to boot as an LXD system container.
# Runs inside the tree (chroot) while the image is built, never on a live system; every path
# below is the new tree's. The builder sets SSP_MIRROR, SSP_SECURITY_MIRROR and SSP_SUITE.
set -eu
: "${SSP_MIRROR:?}" "${SSP_SECURITY_MIRROR:?}" "${SSP_SUITE:?}"

# Apt: the mirror the image was built from, plus the suite's updates and security fixes.
rm -f /etc/apt/sources.list
cat >/etc/apt/sources.list.d/debian.sources <<SOURCES
Types: deb
URIs: $SSP_MIRROR
Suites: $SSP_SUITE $SSP_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SSP_SECURITY_MIRROR
Suites: $SSP_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# Names: debootstrap copied the build host's /etc/hostname and /etc/hosts; LXD's templates
# rewrite both with the container's name when it is created.
echo localhost >/etc/hostname
cat >/etc/hosts <<'HOSTS'
127.0.0.1   localhost
::1         localhost ip6-localhost ip6-loopback
ff02::1     ip6-allnodes
ff02::2     ip6-allrouters
HOSTS

# Network: DHCP on eth0 through systemd-networkd, DNS through systemd-resolved. The client
# identifier is the MAC so that LXD's static leases (nic ipv4.address) apply; the hostname
# stays the one LXD gives the container.
mkdir -p /etc/systemd/network
cat >/etc/systemd/network/10-eth0.network <<'NET'
[Match]
Name=eth0

[Network]
DHCP=yes

[DHCPv4]
ClientIdentifier=mac
UseDomains=true
UseHostname=false
NET
systemctl enable systemd-networkd.service systemd-resolved.service
ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
# No multicast name resolution chatter on the shared bridge.
mkdir -p /etc/systemd/resolved.conf.d
printf '[Resolve]\nLLMNR=no\nMulticastDNS=no\n' >/etc/systemd/resolved.conf.d/10-ssp.conf

# Identity: every container gets its own machine-id (systemd makes one at first boot when the
# file is empty) and its own SSH host keys (made before sshd first starts).
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*
cat >/etc/systemd/system/ssh-host-keys.service <<'UNIT'
[Unit]
Description=Generate this container's SSH host keys
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target ssh.service
UNIT
systemctl enable ssh-host-keys.service ssh.service

# sshd: Debian's defaults, but keys only.
mkdir -p /etc/ssh/sshd_config.d
printf 'PasswordAuthentication no\n' >/etc/ssh/sshd_config.d/10-ssp.conf

# A server: no graphical target. Units that cannot work in an unprivileged container would
# only make the boot "degraded" (systemd-binfmt fails as soon as a package ships a binfmt.d
# file, as python3.11 does: binfmt_misc is not the container's to write).
systemctl set-default multi-user.target
systemctl mask systemd-journald-audit.socket sys-kernel-config.mount sys-kernel-debug.mount \
  sys-kernel-tracing.mount systemd-udev-settle.service systemd-binfmt.service

# No locales package: C.UTF-8 is built into glibc.
echo 'LANG=C.UTF-8' >/etc/default/locale

# Small and clean: no package lists, caches, logs or backup files from the build.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old
find /var/log -type f -exec truncate -s 0 {} +
rm -rf /tmp/* /var/tmp/*
