#!/bin/sh
# Sets up the container owner's account, host name and authorized_keys (run as root inside
# by ssp's reconciler). Arguments: user, host name (both checked names), then NAME=GID for
# each share group the account joins; the keys arrive on stdin, never on a command line.
# Idempotent; works with Debian's tools and with busybox.
set -eu
user="$1"; host="$2"
printf '%s\n' "$host" > /etc/hostname
hostname "$host" 2>/dev/null || true
if grep -q '^127\.0\.1\.1[[:space:]]' /etc/hosts 2>/dev/null; then
  sed -i "s/^127\.0\.1\.1[[:space:]].*/127.0.1.1	$host/" /etc/hosts
else
  printf '127.0.1.1\t%s\n' "$host" >> /etc/hosts
fi
# An image published by another user carries that user's account as uid 1000: it becomes
# this owner's (renamed, same files), and the previous owner's sudo rule and keys go.
previous=$(awk -F: '$3 == 1000 { print $1; exit }' /etc/passwd)
if [ -n "$previous" ] && [ "$previous" != "$user" ] && ! id "$user" >/dev/null 2>&1; then
  rm -f /etc/sudoers.d/90-ssp-owner "/home/$previous/.ssh/authorized_keys"
  if command -v usermod >/dev/null 2>&1; then
    usermod -l "$user" "$previous"
    groupmod -n "$user" "$previous" 2>/dev/null || true
    if [ -e "/home/$user" ]; then usermod -d "/home/$user" "$user"; else usermod -d "/home/$user" -m "$user"; fi
  else
    sed -i "s/^$previous:\(.*\):\/home\/$previous:/$user:\1:\/home\/$user:/; s/^$previous:/$user:/" /etc/passwd
    sed -i "s/^$previous:/$user:/" /etc/group
    if [ -f /etc/shadow ]; then sed -i "s/^$previous:/$user:/" /etc/shadow; fi
    if [ -d "/home/$previous" ] && [ ! -e "/home/$user" ]; then mv "/home/$previous" "/home/$user"; fi
  fi
fi
if ! id "$user" >/dev/null 2>&1; then
  if command -v useradd >/dev/null 2>&1; then
    useradd --create-home --uid 1000 --user-group --shell /bin/bash "$user"
  elif command -v adduser >/dev/null 2>&1; then
    adduser -D -u 1000 -s /bin/sh "$user"
  else
    grep -q "^$user:" /etc/group || printf '%s:x:1000:\n' "$user" >> /etc/group
    printf '%s:x:1000:1000::/home/%s:/bin/sh\n' "$user" "$user" >> /etc/passwd
    if [ -f /etc/shadow ]; then printf '%s:!:1::::::\n' "$user" >> /etc/shadow; fi
    mkdir -p "/home/$user"
  fi
fi
if command -v usermod >/dev/null 2>&1 && grep -q '^sudo:' /etc/group; then
  usermod -a -G sudo "$user"
fi
if [ -d /etc/sudoers.d ]; then
  printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$user" > /etc/sudoers.d/90-ssp-owner
  chmod 0440 /etc/sudoers.d/90-ssp-owner
fi
home=$(awk -F: -v u="$user" '$1 == u { print $6 }' /etc/passwd)
group=$(id -g "$user")
mkdir -p "$home/.ssh"
cat > "$home/.ssh/authorized_keys.ssp-new"
chmod 0600 "$home/.ssh/authorized_keys.ssp-new"
chown "$user:$group" "$home" "$home/.ssh" "$home/.ssh/authorized_keys.ssp-new"
chmod 0700 "$home/.ssh"
mv -f "$home/.ssh/authorized_keys.ssp-new" "$home/.ssh/authorized_keys"
# Share groups: the owner joins each, so what any user of a read-write share writes there
# the others can change. A gid the image already uses keeps its name; the owner joins it.
# Groups of removed shares stay (their gid no longer maps to anything).
shift 2
for pair in "$@"; do
  name="${pair%%=*}"; gid="${pair#*=}"
  if ! awk -F: -v gid="$gid" '$3 == gid { found = 1 } END { exit !found }' /etc/group; then
    if command -v groupadd >/dev/null 2>&1; then groupadd -g "$gid" "$name"; else printf '%s:x:%s:\n' "$name" "$gid" >> /etc/group; fi
  fi
  name=$(awk -F: -v gid="$gid" '$3 == gid { print $1; exit }' /etc/group)
  if command -v usermod >/dev/null 2>&1; then
    usermod -a -G "$name" "$user"
  elif ! awk -F: -v n="$name" -v u="$user" '$1 == n { k = split($4, m, ","); for (i = 1; i <= k; i++) if (m[i] == u) f = 1 } END { exit !f }' /etc/group; then
    sed -i "s/^\($name:[^:]*:[^:]*:..*\)$/\1,$user/; s/^\($name:[^:]*:[^:]*:\)$/\1$user/" /etc/group
  fi
done
