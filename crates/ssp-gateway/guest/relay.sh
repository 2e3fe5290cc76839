#!/bin/bash
# Relays stdin/stdout to 127.0.0.1:$1 inside the container with bash's /dev/tcp: no helper
# binary to push, and it connects from the container's own loopback, as the owner. When the
# service closes the connection the relay ends; the client's end-of-file only stops the
# sending half (bash cannot half-close a socket); a hang-up (the gateway sends SIGHUP when
# the channel closes) ends both.
exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
cat >&3 &
w=$!
trap 'kill $w 2>/dev/null; exit 0' HUP
cat <&3
kill $w 2>/dev/null
exit 0
