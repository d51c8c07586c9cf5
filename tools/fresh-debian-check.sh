#!/bin/bash
# The fresh-machine promise, checked: a minimal Debian 12 root filesystem (mmdebstrap, variant minbase) with
# only what the README names (python3, python3-venv, make, git, ca-certificates), a clone of this
# repository's HEAD (committed files only, as a new user gets them), then the README's two commands inside
# it as root: `make test`, then `make run`, asked by `sesame health` until it answers SERVING, and stopped
# with SIGTERM (it must exit 0).
#
# Not part of `make test`: it downloads a Debian base and every package the Makefile installs, and runs the
# whole suite once more (about as long as `make test` itself, plus the installs). Needs mmdebstrap
# (`apt-get install --no-install-recommends mmdebstrap`) on a Debian or Ubuntu host and network access to
# the Debian, PyPI and npm registries; run it as root (chroot mode) or where user namespaces are allowed
# (unshare mode). `make run` listens on its default ports (50051, 9464), which must be free on the host
# (a chroot shares its network). Nothing is kept: the root filesystem is built in a temporary directory and
# dropped (--format=null). The result of the last run is in docs/operations.md, "A fresh machine".
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$tools" rev-parse --show-toplevel)
. "$tools/debian-rootfs.sh"
work=$(mktemp -d /tmp/sesame-fresh.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone --quiet "$root" "$work/sesame"
# `make run` in its own session; once `sesame health` (the venv's, as a user would ask) reads SERVING, the
# server (make's child) gets SIGTERM, drains and exits 0, and so does make.
make_run='chroot "$1" bash -c "cd /root/sesame && tools/serve-probe.sh var/make-run.log \
    \"make run\" \".venv/bin/sesame health\""'
# tools/apt-install.sh removed its policy-rc.d, and no Redis listens on 6379 (0x18EB, state 0A: LISTEN).
no_service_left='[ ! -e "$1/usr/sbin/policy-rc.d" ] && ! grep -qi ":18EB 00000000:0000 0A" /proc/net/tcp'
debian_rootfs /dev/null python3,python3-venv,make,git,ca-certificates --format=null \
    --customize-hook="copy-in $work/sesame /root" \
    --customize-hook='chroot "$1" bash -c "cd /root/sesame && make test"' \
    --customize-hook="$make_run" \
    --customize-hook="$no_service_left"
echo "fresh Debian 12: make test passed, make run served (sesame health: SERVING) and stopped cleanly," \
    "and no system service was left behind"
