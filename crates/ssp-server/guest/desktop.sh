#!/bin/sh
# A user's remote desktop inside the container (run as root inside by ssp): TigerVNC's Xvnc
# running as the user with an XFCE session on it, one systemd unit per user
# (ssp-desktop@USER), reachable only through a unix socket that ssp proxies to the browser.
#
#   enable USER   install what is missing (apt-get) and ssp's unit and session helper
#   disable       stop every session, remove the unit and helper (never packages or homes)
#   start USER    start USER's session unless it runs; print its secret (one line) once the
#                 VNC socket accepts; exit 3 when not enabled
#   stop USER     stop USER's session
#   status USER   print `running BYTES` (`running -` when unknown) or `stopped`
#
# Exit codes: 0 done, 1 failed (stderr says why), 2 bad arguments or no such user, 3 not
# enabled, 4 this container cannot have a desktop (no systemd; no apt-get to install it).
# Each session: Xvnc on display :UID (two users never collide) with a fresh 8-character
# VNC password (the secret), listening only on /run/ssp-desktop/USER/rfb.sock (0600, in a
# 0700 folder of USER's), never on TCP; the secret's only plain copy is root's
# /run/ssp-desktop/.secret-USER. Stopping the unit ends everything the session started.
set -u

unit=/etc/systemd/system/ssp-desktop@.service
helper=/usr/local/lib/ssp/desktop-session
run=/run/ssp-desktop
packages="tigervnc-standalone-server tigervnc-tools xfce4 xfce4-terminal dbus-x11 x11-utils xdotool"

fail() { code="$1"; shift; printf '%s\n' "$*" >&2; exit "$code"; }

# USER: a plain account name (it becomes a unit instance and a path); $2 is `exists` where
# the account must exist.
check_user() {
  case "$1" in
    ''|[!a-z_]*|*[!a-z0-9_-]*) fail 2 "\"$1\" is not an account name ssp uses" ;;
  esac
  if [ "${2:-}" = exists ] && ! id -u "$1" >/dev/null 2>&1; then
    fail 2 "there is no user $1 in this container"
  fi
}

have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

cmd_enable() {
  have_systemd || fail 4 "this container does not run systemd, which the desktop needs: use the debian-12-desktop image"
  missing=
  for tool in Xtigervnc vncpasswd xfce4-session dbus-launch xauth; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
  done
  if [ -n "$missing" ]; then
    command -v apt-get >/dev/null 2>&1 ||
      fail 4 "this image has no apt-get: use the debian-12-desktop image or install tigervnc-standalone-server and xfce4 yourself"
    log=$(mktemp) || fail 1 "cannot make a temporary file"
    # shellcheck disable=SC2086 # $packages is a list of words
    if ! { DEBIAN_FRONTEND=noninteractive apt-get -q update &&
      DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=120 install --no-install-recommends $packages; } >"$log" 2>&1; then
      tail -n 15 "$log" >&2
      rm -f "$log"
      fail 1 "installing the desktop packages ($packages) failed (apt-get's last lines above): does this container reach a Debian mirror?"
    fi
    rm -f "$log"
  fi
  mkdir -p "${unit%/*}" "${helper%/*}"
  if ! { write_helper >"$helper.new" && chmod 0755 "$helper.new" && mv -f "$helper.new" "$helper"; }; then
    fail 1 "cannot write $helper"
  fi
  if ! { write_unit >"$unit.new" && mv -f "$unit.new" "$unit"; }; then
    fail 1 "cannot write $unit"
  fi
  systemctl daemon-reload || fail 1 "systemctl daemon-reload failed"
}

cmd_disable() {
  if have_systemd; then
    systemctl stop 'ssp-desktop@*.service' 2>/dev/null
  fi
  rm -f "$unit" "$helper" "$unit.new" "$helper.new"
  rmdir "${helper%/*}" 2>/dev/null
  if have_systemd; then
    systemctl daemon-reload
    systemctl reset-failed 'ssp-desktop@*.service' 2>/dev/null
  fi
  rm -rf "$run"
  return 0
}

enabled() { [ -f "$unit" ] && [ -x "$helper" ] && have_systemd; }

running() { systemctl is-active --quiet "ssp-desktop@$1.service"; }

# Whether the session's RFB socket accepts: the socket file is there (the session helper
# makes its folder afresh before every start) and, where `ss` (iproute2) can tell, listens.
listening() {
  [ -S "$run/$1/rfb.sock" ] || return 1
  command -v ss >/dev/null 2>&1 || return 0
  [ -n "$(ss -Hlx src "$run/$1/rfb.sock" 2>/dev/null)" ]
}

cmd_start() {
  enabled || fail 3 "the desktop is not enabled in this container"
  unit_name="ssp-desktop@$1.service"
  if ! running "$1"; then
    systemctl start "$unit_name" ||
      fail 1 "starting the desktop failed: $(journalctl -q -u "$unit_name" -n 10 -o cat --no-pager 2>/dev/null)"
  fi
  i=0
  until listening "$1"; do
    running "$1" ||
      fail 1 "the desktop session ended while starting: $(journalctl -q -u "$unit_name" -n 10 -o cat --no-pager 2>/dev/null)"
    [ "$i" -lt 300 ] || fail 1 "the desktop's VNC socket was not ready within 30 s"
    sleep 0.1
    i=$((i + 1))
  done
  [ -s "$run/.secret-$1" ] || fail 1 "the desktop session runs but has no secret"
  head -n 1 "$run/.secret-$1"
}

cmd_stop() {
  if have_systemd && [ -f "$unit" ]; then
    systemctl stop "ssp-desktop@$1.service" || fail 1 "stopping the desktop of $1 failed"
  fi
  return 0
}

cmd_status() {
  if have_systemd && [ -f "$unit" ] && running "$1"; then
    memory=$(systemctl show -p MemoryCurrent --value "ssp-desktop@$1.service" 2>/dev/null)
    # systemd says `[not set]`, or 2^64-1, when the memory controller does not count.
    case "$memory" in
      ''|*[!0-9]*|18446744073709551615) memory=- ;;
    esac
    echo "running $memory"
  else
    echo stopped
  fi
}

write_unit() {
  cat <<UNIT
# Installed by ssp (its desktop script): one user's remote desktop, ssp-desktop@USER.
[Unit]
Description=ssp remote desktop of %i
After=systemd-user-sessions.service dbus.service

[Service]
Type=simple
User=%i
WorkingDirectory=~
# No PAMName=: pam_systemd would move the session's processes into a logind session scope,
# outside this unit, which then could neither stop them nor count their memory.
# As root (+): the user's folder, the secret and the VNC password file; afterwards, remove them.
ExecStartPre=+$helper prepare %i
ExecStart=$helper session %i
ExecStopPost=+$helper cleanup %i
KillMode=control-group
TimeoutStopSec=10
UNIT
}

write_helper() {
  cat <<'HELPER'
#!/bin/sh
# ssp's desktop session helper, run by ssp-desktop@USER.service (installed by ssp).
#   prepare USER   (root) makes /run/ssp-desktop/USER (0700, USER's), a new secret (root's
#                  /run/ssp-desktop/.secret-USER) and the VNC password file made from it
#   session USER   (USER) Xvnc on :UID, on the unix socket only, then XFCE on it; returns
#                  when either ends, and ends the other
#   cleanup USER   (root) removes the folder and the secret
set -u
run=/run/ssp-desktop
user="$2"
dir="$run/$user"
case "$1" in
prepare)
  set -e
  umask 077
  mkdir -p "$run"
  chmod 0755 "$run"
  # Made afresh by root in root's folder: nothing the user left in it is followed.
  rm -rf "$dir"
  mkdir -m 0700 "$dir"
  # Bounded input and no early close: nothing gets EPIPE (which systemd does not ignore away).
  secret=$(head -c 4096 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9' | cut -c 1-8)
  [ "${#secret}" -eq 8 ]
  printf '%s\n' "$secret" >"$run/.secret-$user.new"
  mv -f "$run/.secret-$user.new" "$run/.secret-$user"
  # The password reaches vncpasswd on its stdin, never on a command line.
  printf '%s\n' "$secret" | vncpasswd -f >"$dir/passwd"
  # The display's number, for programs and tests that start windows on it from outside.
  printf ':%s\n' "$(id -u "$user")" >"$dir/display"
  chown "$user:" "$dir/passwd" "$dir/display" "$dir"
  # Xvnc makes its display socket here; systemd-tmpfiles normally has already.
  mkdir -p /tmp/.X11-unix
  chmod 1777 /tmp/.X11-unix
  ;;
session)
  display=":$(id -u)"
  export DISPLAY="$display"
  export XAUTHORITY="${HOME:?}/.Xauthority"
  # X clients need this cookie (in the user's usual ~/.Xauthority, so programs started over
  # SSH with DISPLAY set work as well); the cookie, like the password, goes through stdin.
  cookie=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  printf 'add %s . %s\n' "$display" "$cookie" | xauth -q -f "$XAUTHORITY" source - || exit 1
  # Xvnc tells its parent it is ready with SIGUSR1 when started with SIGUSR1 ignored.
  ready=0
  trap 'ready=1' USR1
  (
    trap '' USR1
    exec Xtigervnc "$display" -auth "$XAUTHORITY" -nolisten tcp -s 0 \
      -rfbunixpath "$dir/rfb.sock" -rfbunixmode 0600 -rfbport -1 \
      -SecurityTypes VncAuth -PasswordFile "$dir/passwd" -AlwaysShared \
      -geometry 1280x800 -depth 24 -desktop "$user"
  ) &
  xvnc=$!
  i=0
  while [ "$ready" = 0 ]; do
    kill -0 "$xvnc" 2>/dev/null || { echo "Xtigervnc ended before it was ready" >&2; exit 1; }
    [ "$i" -lt 300 ] || { echo "Xtigervnc was not ready within 30 s" >&2; kill "$xvnc"; exit 1; }
    sleep 0.1
    i=$((i + 1))
  done
  trap - USR1
  # What a login would have set: the runtime folder (ours, removed when the session ends)
  # and the system's locale.
  export XDG_RUNTIME_DIR="$dir"
  if [ -r /etc/default/locale ]; then
    # shellcheck disable=SC1091
    . /etc/default/locale
  fi
  export LANG="${LANG:-C.UTF-8}"
  dbus-launch --exit-with-session xfce4-session
  # Logging out of XFCE ends the session, and so the unit.
  kill "$xvnc" 2>/dev/null
  wait "$xvnc"
  exit 0
  ;;
cleanup)
  rm -rf "$dir" "$run/.secret-$user"
  ;;
*)
  echo "usage: $0 prepare|session|cleanup USER" >&2
  exit 2
  ;;
esac
HELPER
}

command="${1:-}"
case "$command" in
  enable|start) [ $# -eq 2 ] || fail 2 "usage: $0 $command USER"; check_user "$2" exists ;;
  stop|status) [ $# -eq 2 ] || fail 2 "usage: $0 $command USER"; check_user "$2" ;;
  disable) [ $# -eq 1 ] || fail 2 "usage: $0 disable" ;;
  *) fail 2 "usage: $0 enable USER | disable | start USER | stop USER | status USER" ;;
esac
shift
"cmd_$command" "$@"
