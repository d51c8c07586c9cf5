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
mmdebstrap --variant=minbase --format=null \
    --include=python3,python3-venv,make,git,ca-certificates \
    --customize-hook="copy-in $work/sesame /root" \
    --customize-hook='chroot "$1" bash -c "cd /root/sesame && make test"' \
    bookworm /dev/null
echo "fresh Debian 12: make test passed"
