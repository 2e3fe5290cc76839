# shellcheck shell=bash
# The ssp daemon on the host: its configuration, its start (a systemd unit where systemd
# runs, a background process otherwise), the first admin, and the CLI logged in as them.
# Sourced after lib/host.sh; every function is idempotent.

SSP_CONFIG_FILE=${SSP_CONFIG_FILE:-/etc/ssp/ssp.toml}
SSP_STATE_DIR=/var/lib/ssp
SSP_SOCKET=/run/ssp/ssp.sock
SSP_PORT=${SSP_PORT:-8443}
SSP_ADMIN=${SSP_ADMIN:-admin}
# From lib/host.sh, sourced first.
: "${SSP_POOL:?lib/host.sh sets it}" "${SSP_BRIDGE:?lib/host.sh sets it}"

# Writes the configuration once; an existing file is the admin's and is left alone.
ssp_write_config() {
  [ -f "$SSP_CONFIG_FILE" ] && return 0
  ssp_log "writing $SSP_CONFIG_FILE"
  mkdir -p "$(dirname "$SSP_CONFIG_FILE")"
  cat >"$SSP_CONFIG_FILE" <<TOML
# ssp daemon configuration. Every key has a default; see ARCHITECTURE.md.
state_dir = "$SSP_STATE_DIR"

[api]
listen = "0.0.0.0:$SSP_PORT"
socket = "$SSP_SOCKET"

[lxd]
pool = "$SSP_POOL"
network = "$SSP_BRIDGE"

[defaults]
image = "debian-12"
cpus = 2
memory = "4GiB"
disk = "20GiB"

[quota]
max_containers = 5
max_cpus = 16
max_memory = "64GiB"
max_disk = "500GiB"
max_gpus = 0
TOML
}

SSP_ENV_FILE=${SSP_ENV_FILE:-/etc/ssp/ssp.env}

# Remembers daemon settings given in the environment of `scripts/up` (today
# SSP_GPU_EMULATE=N: emulate N GPUs; 0 turns emulation off), so the next start keeps them.
ssp_write_env() {
  [ -n "${SSP_GPU_EMULATE:-}" ] || return 0
  case "$SSP_GPU_EMULATE" in
    *[!0-9]* | "") ssp_die "SSP_GPU_EMULATE must be a number of GPUs, not '$SSP_GPU_EMULATE'" ;;
  esac
  mkdir -p "$(dirname "$SSP_ENV_FILE")"
  touch "$SSP_ENV_FILE"
  grep -v '^SSP_GPU_EMULATE=' "$SSP_ENV_FILE" >"$SSP_ENV_FILE.new" || true
  echo "SSP_GPU_EMULATE=$SSP_GPU_EMULATE" >>"$SSP_ENV_FILE.new"
  mv "$SSP_ENV_FILE.new" "$SSP_ENV_FILE"
  ssp_log "GPUs: emulating $SSP_GPU_EMULATE (remembered in $SSP_ENV_FILE)"
}

ssp_daemon_pid() {
  local pid
  pid=$(cat /run/ssp/ssp.pid 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# (Re)starts the daemon so it runs the binary just installed, and waits until it listens.
ssp_start_daemon() {
  rm -f "$SSP_STATE_DIR/listening.json"
  if ssp_have_systemd; then
    cat >/etc/systemd/system/ssp.service <<UNIT
[Unit]
Description=ssp: Super Server Platform daemon
After=network-online.target lxd.service snap.lxd.daemon.service
Wants=lxd.service

[Service]
EnvironmentFile=-$SSP_ENV_FILE
ExecStart=/usr/local/bin/ssp serve --config $SSP_CONFIG_FILE
Restart=always
RestartSec=2
# SIGKILL-safe by design: the reconciler finishes whatever was in flight.
KillMode=mixed

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable ssp.service >/dev/null 2>&1
    ssp_log "restarting ssp.service"
    systemctl restart ssp.service
  else
    local pid
    if pid=$(ssp_daemon_pid); then
      ssp_log "stopping the running ssp daemon ($pid)"
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    ssp_log "starting the ssp daemon (log: /var/log/ssp.log)"
    mkdir -p /run/ssp
    (
      # shellcheck source=/dev/null  # the admin's settings, written by scripts/up
      if [ -f "$SSP_ENV_FILE" ]; then set -a; . "$SSP_ENV_FILE"; set +a; fi
      exec setsid /usr/local/bin/ssp serve --config "$SSP_CONFIG_FILE" </dev/null >>/var/log/ssp.log 2>&1
    ) &
    echo $! >/run/ssp/ssp.pid
  fi
  for _ in $(seq 300); do
    [ -f "$SSP_STATE_DIR/listening.json" ] && return 0
    sleep 0.1
  done
  tail -n 20 /var/log/ssp.log >&2 2>/dev/null || true
  ssp_die "the ssp daemon did not come up in 30 s (see /var/log/ssp.log or journalctl -u ssp)"
}

# Root on the host talks to the daemon over its socket without a token.
ssp_as_root() { SSP_URL="unix:$SSP_SOCKET" SSP_TOKEN="" /usr/local/bin/ssp "$@"; }

# Makes the first admin (with the caller's SSH public keys, if any) unless they exist.
ssp_ensure_admin() {
  if ssp_as_root user show "$SSP_ADMIN" >/dev/null 2>&1; then return 0; fi
  ssp_log "creating the admin user $SSP_ADMIN"
  local keys=() key
  for key in "$HOME"/.ssh/id_ed25519.pub "$HOME"/.ssh/id_ecdsa.pub "$HOME"/.ssh/id_rsa.pub; do
    [ -f "$key" ] && keys+=(--key "$key")
  done
  ssp_as_root user add "$SSP_ADMIN" --admin "${keys[@]}" >/dev/null
}

ssp_cli_config_url() {
  local file=${SSP_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/ssp/config.toml}
  [ -f "$file" ] && sed -n 's/^url *= *"\(https:[^"]*\)".*/\1/p' "$file"
}

# Leaves this user's `ssp` logged in as the admin over HTTPS, pinned to the certificate.
ssp_login_admin() {
  # Logged in already means: the CLI's own config reaches the daemon as the admin (root's
  # CLI would otherwise fall back to the socket, which is not a login).
  local who
  who=$(SSP_URL="" /usr/local/bin/ssp --json info 2>/dev/null | sed -n 's/.*"user": *"\([^"]*\)".*/\1/p')
  if [ "$who" = "$SSP_ADMIN" ] && [ -n "$(ssp_cli_config_url)" ]; then return 0; fi
  ssp_log "logging the ssp CLI in as $SSP_ADMIN"
  local token
  token=$(ssp_as_root --json token create --user "$SSP_ADMIN" --name "cli-$(date +%Y%m%d%H%M%S)" |
    sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || ssp_die "could not make a token for $SSP_ADMIN"
  /usr/local/bin/ssp login "https://127.0.0.1:$SSP_PORT" --token "$token" --ca "$SSP_STATE_DIR/tls/cert.pem" >/dev/null
}
