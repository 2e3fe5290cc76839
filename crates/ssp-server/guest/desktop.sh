#!/bin/sh
# Placeholder: replaced by the desktop session script (enable|disable|start|stop|status).
set -eu
echo "ssp-desktop: not implemented yet" >&2
exit 4
