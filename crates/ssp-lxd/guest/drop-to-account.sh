#!/bin/sh
# Runs as root with UID GID COMMAND…: execs the command as that uid and gid with the
# account's groups (LXD 5.0.2's exec sets only a uid and a gid and drops every other group).
# util-linux `setpriv --init-groups` where it exists (Debian), else busybox `su` to the
# account's name (which sets its groups too, and does not make a new session the way
# util-linux `su -c` does). Both replace this shell with `exec`, so nothing ever runs as root
# after a failed switch: a failure ends the command. A command that is not there, or not
# executable, is answered first as a shell would (127 "command not found", 126 "Permission
# denied"), not in the switching tool's words.
uid="$1"; gid="$2"; shift 2
case "$1" in
  */*) if [ ! -e "$1" ]; then echo "$1: No such file or directory" >&2; exit 127; fi
       if [ -d "$1" ] || [ ! -x "$1" ]; then echo "$1: Permission denied" >&2; exit 126; fi ;;
  *) command -v "$1" >/dev/null 2>&1 || { echo "$1: command not found" >&2; exit 127; } ;;
esac
if setpriv --help 2>&1 | grep -q -e --init-groups; then
  exec setpriv --reuid="$uid" --regid="$gid" --init-groups -- "$@"
fi
user=$(awk -F: -v uid="$uid" '$3 == uid { print $1; exit }' /etc/passwd)
if [ -z "$user" ]; then echo "no account with uid $uid in /etc/passwd" >&2; exit 126; fi
# The inner shell expands "$0" "$@" (the command and its words), not this one.
# shellcheck disable=SC2016
exec su -s /bin/sh -c 'exec "$0" "$@"' -- "$user" "$@"
