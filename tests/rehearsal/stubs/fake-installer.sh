#!/bin/sh
# Stand-in for the @DIST@ install script the curl stub serves at its pinned URL.
# The real script downloads a release; this one records INSTALL_* and installs a fake
# binary and the systemd unit(s) the real script would.
set -e
exec /usr/bin/python3 -S /usr/lib/rancher-ha-rehearsal/installer @DIST@ "$@"
