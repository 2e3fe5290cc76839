#!/bin/sh
# Runs OpenSSH's sftp server, wherever the container's distribution keeps it.
for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/sftp-server; do
  [ -x "$p" ] && exec "$p"
done
echo "ssp: no sftp-server in this container (install openssh-sftp-server)" >&2
exit 127
