#!/bin/bash
# The image's install step: run as root in the runtime root filesystem, by the Dockerfile's runtime stage
# and by tools/image-check.sh in a Debian 12 root filesystem made with mmdebstrap, so that the two cannot
# drift (docs/decisions/0028). FROM: a directory holding this script, tools/apt-install.sh, the wheel built
# by `make wheel` and requirements.lock; it is removed at the end.
#
# Debian's python3, softhsm2 and redis-server (for the development defaults; production names its own HSM
# library and Redis), fonts-dejavu-core and fonts-droid-fallback (the evidence PDF's fonts: decision 0042), without recommended packages and with no service started or enabled; a venv under
# /opt/sesame holding the runtime lock (every file checked against its hash) and the wheel alone (which
# resolves nothing), then pip itself removed from the venv and the packages only the venv's creation needed
# purged: no compiler, no pip, no dev tool. The user `sesame` (uid 10001) owns only its data directory,
# /var/lib/sesame/var (SESAME_VAR_DIR, a volume): the root filesystem can be mounted read-only.
set -euo pipefail
from=$1
"$from/apt-install.sh" ca-certificates python3 python3-venv softhsm2 redis-server fonts-dejavu-core fonts-droid-fallback
python3 -m venv /opt/sesame
/opt/sesame/bin/pip install --no-cache-dir --no-compile --quiet --require-hashes -r "$from/requirements.lock"
/opt/sesame/bin/pip install --no-cache-dir --no-compile --quiet --no-deps "$from"/*.whl
/opt/sesame/bin/pip uninstall --quiet --yes pip setuptools 2>/dev/null || /opt/sesame/bin/pip uninstall --quiet --yes pip
# Compiled once here, so that a read-only root filesystem costs no start-up time (nothing can be cached).
/opt/sesame/bin/python -m compileall -q /opt/sesame/lib >/dev/null
ln -sf /opt/sesame/bin/sesame /usr/local/bin/sesame
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --auto-remove \
    python3-venv python3.11-venv python3-pip-whl python3-setuptools-whl >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
useradd --system --user-group --create-home --home-dir /var/lib/sesame --uid 10001 sesame
install -d -o sesame -g sesame -m 0750 /var/lib/sesame/var
rm -rf "$from"
