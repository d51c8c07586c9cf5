#!/bin/bash
# Install Debian packages for `make run` / `make test` without leaving a system service behind.
#
# The tests and `make run` start their own redis-server and Kannel on private ports and directories; the
# packages' own services (redis-server on 6379, Kannel's bearerbox) are not wanted on the user's machine.
# So: no recommended packages (npm alone pulled 613 with them), a policy-rc.d that forbids starting any
# service during the install (removed afterwards, and only if this script put it there: a machine or image
# may have its own), then the services of the packages named here are disabled, so none starts at the
# next boot either. A package that was already installed is not touched (this script is called only for
# missing ones). docs/decisions/0017-fresh-machine.md says why.
set -euo pipefail
[ "$#" -gt 0 ] || exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Written by Sesame'"'"'s tools/apt-install.sh for the length of one install.\nexit 101\n' \
        | $sudo tee "$policy" >/dev/null
    $sudo chmod 0755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
fi
echo "installing (apt, no recommends, no service started):" "$@"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
for package in "$@"; do
    case "$package" in
        redis-server) service=redis-server ;;
        kannel) service=kannel ;;
        prometheus) service=prometheus ;;
        *) continue ;;
    esac
    if command -v systemctl >/dev/null; then
        $sudo systemctl disable --quiet "$service" 2>/dev/null || true
    fi
    if [ -e "/etc/init.d/$service" ] && command -v update-rc.d >/dev/null; then
        $sudo update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
    echo "disabled the $service system service (Sésame starts its own)"
done
