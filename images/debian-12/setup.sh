#!/bin/sh
# Configures a freshly debootstrapped Debian 12 tree to boot as an LXD system container.
# Runs inside the tree (chroot) while the image is built; never on a live system.
set -eu

# Network: DHCP on eth0 through systemd-networkd, DNS through systemd-resolved.
mkdir -p /etc/systemd/network
cat >/etc/systemd/network/eth0.network <<'NET'
[Match]
Name=eth0

[Network]
DHCP=yes

[DHCPv4]
UseDomains=true
NET
systemctl enable systemd-networkd.service systemd-resolved.service
ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf

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

# sshd: keys only.
mkdir -p /etc/ssh/sshd_config.d
cat >/etc/ssh/sshd_config.d/10-ssp.conf <<'SSHD'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
SSHD

# Units that cannot work in an unprivileged container only make the boot "degraded".
systemctl mask systemd-journald-audit.socket sys-kernel-config.mount sys-kernel-debug.mount \
  sys-kernel-tracing.mount systemd-udev-settle.service >/dev/null 2>&1 || true

# A UTF-8 locale people expect.
sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
locale-gen >/dev/null
echo 'LANG=en_US.UTF-8' >/etc/default/locale

# Small and clean: no package lists, caches or logs from the build.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log /var/log/apt/* /tmp/* /var/tmp/*
echo "localhost" >/etc/hostname
