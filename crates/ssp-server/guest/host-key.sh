#!/bin/sh
# Prints the container's sshd ed25519 host key for ssp to pin (run as root inside by ssp's
# reconciler). Exits 3 where no sshd is installed; waits up to a minute for a first boot
# that is still generating its keys.
[ -x /usr/sbin/sshd ] || exit 3
i=0
while [ "$i" -lt 60 ]; do
  if [ -s /etc/ssh/ssh_host_ed25519_key.pub ]; then
    exec cat /etc/ssh/ssh_host_ed25519_key.pub
  fi
  sleep 1
  i=$((i + 1))
done
exit 1
