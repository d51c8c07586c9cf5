#!/bin/bash
# The fresh-machine promise, checked: a minimal Debian 12 root filesystem (mmdebstrap, variant minbase) with
# only what the README names (python3, python3-venv, make, git, ca-certificates), a clone of this
# repository's HEAD (committed files only, as a new user gets them), then `make test` inside it as root.
#
# Not part of `make test`: it downloads a Debian base and every package the Makefile installs, and runs the
# whole suite once more (about as long as `make test` itself, plus the installs). Needs mmdebstrap
# (`apt-get install --no-install-recommends mmdebstrap`) on a Debian or Ubuntu host and network access to
# the Debian, PyPI and npm registries; run it as root (chroot mode) or where user namespaces are allowed
# (unshare mode). Nothing is kept: the root filesystem is built in a temporary directory and dropped
# (--format=null). The result of the last run is in docs/operations.md, "A fresh machine".
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d /tmp/sesame-fresh.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone --quiet "$root" "$work/sesame"
# The host's own local CAs (a TLS-inspecting proxy's, say) come along, so pip and npm trust what it trusts.
trust_local_cas='if [ -n "$(ls /usr/local/share/ca-certificates 2>/dev/null)" ]; then
    cp -r /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/"
    chroot "$1" update-ca-certificates >/dev/null
fi'
# tools/apt-install.sh removed its policy-rc.d, and no Redis listens on 6379 (0x18EB, state 0A: LISTEN).
no_service_left='[ ! -e "$1/usr/sbin/policy-rc.d" ] && ! grep -qi ":18EB 00000000:0000 0A" /proc/net/tcp'
# --skip: mmdebstrap would otherwise put its own policy-rc.d and a dummy start-stop-daemon in place while
# the hooks run, and hide whether tools/apt-install.sh keeps services from starting as it does on a machine.
mmdebstrap --variant=minbase --format=null --skip=chroot/policy-rc.d --skip=chroot/start-stop-daemon \
    --include=python3,python3-venv,make,git,ca-certificates \
    --customize-hook="copy-in $work/sesame /root" \
    --customize-hook="$trust_local_cas" \
    --customize-hook='chroot "$1" bash -c "cd /root/sesame && make test"' \
    --customize-hook="$no_service_left" \
    bookworm /dev/null
echo "fresh Debian 12: make test passed, and no system service was left behind"
