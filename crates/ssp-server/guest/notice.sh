#!/bin/sh
# Tells the container's people something: appended to /var/log/ssp/notices and written to
# every terminal open inside. Argument: the message (ssp's own text and numbers only).
set -u
mkdir -p /var/log/ssp
printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" >> /var/log/ssp/notices
for t in /dev/pts/[0-9]*; do
  [ -c "$t" ] && printf '\r\n[ssp] %s\r\n' "$1" > "$t" 2>/dev/null
done
exit 0
