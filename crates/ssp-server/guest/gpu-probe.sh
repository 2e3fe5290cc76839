#!/bin/sh
# Checks, after a start or a change of GPUs, that the container sees exactly the GPUs it
# holds (run as root inside by ssp's reconciler). Arguments: how many GPUs, and `emulated`
# or `nvidia`.
#   emulated: /dev/nvidia0..N-1 are character devices and there are no other GPU nodes.
#   nvidia:   `nvidia-smi -L` lists exactly N GPUs, after making ssp's read-only copy of the
#             host driver's userspace (/usr/local/nvidia) usable, where ssp provides it.
# Images differ: busybox has no /etc/ld.so.conf.d, no /usr/local/bin, maybe no ldconfig, so
# every folder written is made first and the probe never depends on the dynamic linker's
# cache.
set -u
expected="$1"; kind="$2"
if [ "$kind" = emulated ]; then
  n=0
  for d in /dev/nvidia[0-9]*; do
    [ -e "$d" ] || continue
    [ -c "$d" ] || { echo "$d is not a character device"; exit 1; }
    n=$((n + 1))
  done
  k=0
  while [ "$k" -lt "$expected" ]; do
    [ -c "/dev/nvidia$k" ] || { echo "/dev/nvidia$k is missing"; exit 1; }
    k=$((k + 1))
  done
  [ "$n" -eq "$expected" ] || { echo "$n GPU nodes inside, $expected expected"; exit 1; }
  exit 0
fi
driver=/usr/local/nvidia
if [ -d "$driver/lib" ]; then
  mkdir -p /etc/ld.so.conf.d /usr/local/bin /etc/profile.d
  echo "$driver/lib" > /etc/ld.so.conf.d/ssp-nvidia.conf
  if command -v ldconfig >/dev/null 2>&1; then
    ldconfig 2>/dev/null || true
  else
    # No dynamic linker cache to update: login shells find the libraries by path instead
    # (the variable is meant to expand when the profile runs, not now).
    # shellcheck disable=SC2016
    printf 'export LD_LIBRARY_PATH="%s/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"\n' "$driver" \
      > /etc/profile.d/ssp-nvidia.sh
  fi
  if [ -x "$driver/bin/nvidia-smi" ]; then
    ln -sf "$driver/bin/nvidia-smi" /usr/local/bin/nvidia-smi
  fi
  LD_LIBRARY_PATH="$driver/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
  PATH="/usr/local/bin:$PATH"
fi
command -v nvidia-smi >/dev/null 2>&1 || { echo "nvidia-smi is not available inside"; exit 1; }
listed=$(nvidia-smi -L 2>&1) || { echo "nvidia-smi failed: $listed"; exit 1; }
n=$(printf '%s\n' "$listed" | grep -c '^GPU ')
[ "$n" -eq "$expected" ] || { echo "nvidia-smi lists $n GPUs, $expected expected"; exit 1; }
exit 0
