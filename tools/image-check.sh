#!/bin/bash
# `make image`: the image, built and started. Where a Docker engine answers, the Dockerfile is built and
# the image run read-only until `sesame health` reads SERVING. Where none does (the machines here), that is
# said, never passed over: the image's runtime root filesystem is then made from Debian's packages with
# mmdebstrap (tools/debian-rootfs.sh, the fresh-machine check's) and the image's own install step,
# tools/image-install.sh, the one script the Dockerfile's runtime stage runs, is run in it; then its start
# step (the Dockerfile's ENV, USER, WORKDIR and `sesame serve`) runs there as that user, with the root
# filesystem mounted read-only, the data directory a volume and /tmp a tmpfs, until `sesame health` (the
# HEALTHCHECK) reads SERVING, and a SIGTERM drains it. The root filesystem must hold no compiler, no dev
# tool and no dev-only Python package; its size is printed. docs/decisions/0028.
#
# Run by `make image` after `make wheel` (dist/ holds the one wheel). Root (chroot mode, mount namespace).
# Not part of `make test` (a Debian base and the runtime lock are downloaded: minutes); the last run is in
# docs/operations.md, "The image".
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$tools" rev-parse --show-toplevel)
cd "$root"
. tools/debian-rootfs.sh
python=.venv/bin/python
started=$(date +%s)

# The start step's environment: the runtime stage's ENV, development (embedded Redis and dev token under
# the data volume, as `docker run -e SESAME_ENV=development` would), free loopback ports (a chroot shares
# the host's network); and its USER and WORKDIR.
read -r -d '' settings_py <<'PY' || true
from tests.support.ports import free_port
from tests.test_docker_image import image_env, runtime_stage

env = image_env()
stage = {keyword: " ".join(i.arguments for i in runtime_stage() if i.keyword == keyword) for keyword in ("COPY", "RUN")}
assert "tools/image-install.sh" in stage["COPY"], "the Dockerfile's runtime stage has no tools/image-install.sh"
assert "image-install.sh /tmp/install" in stage["RUN"], "the Dockerfile's runtime stage does not run it"
env.update(
    SESAME_ENV="development",
    SESAME_GRPC_ADDR=f"127.0.0.1:{free_port()}",
    SESAME_METRICS_ADDR=f"127.0.0.1:{free_port()}",
    SESAME_HEALTH_ADDR=f"127.0.0.1:{free_port()}",
)
print(" ".join(f"{key}={value}" for key, value in env.items()))
for keyword in ("USER", "WORKDIR"):
    print([i.arguments for i in runtime_stage() if i.keyword == keyword][-1])
PY
{ read -r image_env; read -r image_user; read -r workdir; } < <("$python" -c "$settings_py")
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if docker info >/dev/null 2>&1; then
    echo "== a Docker engine answers: building the Dockerfile's image"
    docker build -t sesame:check .
    environment=()
    for pair in $image_env; do environment+=(-e "$pair"); done
    container=$(docker run -d --read-only --tmpfs /tmp --network host -v /var/lib/sesame/var \
        "${environment[@]}" sesame:check serve)
    trap 'docker rm -f "$container" >/dev/null' EXIT
    for _ in $(seq 120); do
        answer=$(docker exec "${environment[@]}" "$container" sesame health 2>&1) || true
        [ "$answer" = SERVING ] && break
        sleep 1
    done
    [ "$answer" = SERVING ] || { docker logs "$container" | tail -n 40; echo "image: not SERVING" >&2; exit 1; }
    [ "$(docker exec "$container" id -u)" = 10001 ]
    docker stop -t 30 "$container" >/dev/null
    [ "$(docker inspect -f '{{.State.ExitCode}}' "$container")" = 0 ]
    docker image inspect -f 'image size: {{.Size}} bytes' sesame:check
    echo "Docker image built, served (sesame health: SERVING) read-only as uid 10001, drained on SIGTERM"
    exit 0
fi
echo "== NO DOCKER ENGINE here (docker info fails): the Dockerfile's image is NOT built by this run."
echo "== Instead: its runtime root filesystem from Debian's packages, its install and start steps in it."

wheels=(dist/*.whl)
[ "${#wheels[@]}" = 1 ] && [ -f "${wheels[0]}" ] || { echo "dist/ must hold exactly one wheel" >&2; exit 1; }
work=$(mktemp -d /tmp/sesame-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/install"
cp tools/apt-install.sh tools/image-install.sh requirements.lock "${wheels[0]}" "$work/install/"
rootfs=$work/rootfs
# Without manual pages, documentation (but its copyright files) and translations, as Debian's -slim images.
debian_rootfs "$rootfs" ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="copy-in $work/install /tmp" \
    --customize-hook='chroot "$1" /tmp/install/image-install.sh /tmp/install'
built=$(date +%s)

echo "== no compiler, no dev tool, no dev-only Python package"
for program in gcc cc c++ g++ clang ld as make cmake git pip pip3 python3-config; do
    for dir in usr/bin usr/local/bin usr/sbin opt/sesame/bin; do
        if [ -e "$rootfs/$dir/$program" ]; then echo "found $dir/$program" >&2; exit 1; fi
    done
done
if chroot "$rootfs" dpkg-query -W -f '${Package}\n' | grep -E '^(gcc|g\+\+|cpp|clang)(-[0-9]+)?$|^(binutils|make|git|build-essential)$|^python3[.0-9]*-(pip|venv|pip-whl|setuptools-whl)$|-dev$'; then
    echo "dev packages installed" >&2
    exit 1
fi
"$python" - "$rootfs" <<'PY'
import sys
from pathlib import Path

from tests.test_docker_image import dev_only_packages

site = next(Path(sys.argv[1], "opt/sesame/lib").glob("python3*/site-packages"))
installed = {p.name.split("-")[0].lower().replace("_", "-") for p in site.glob("*.dist-info")}
found = installed & {name.lower() for name in dev_only_packages()}
assert not found, f"dev-only Python packages in the image: {sorted(found)}"
print(f"{len(installed)} Python distributions, none of the dev extra's")
PY

echo "== start step: $image_user, read-only root, $workdir/var a volume, /tmp a tmpfs"
volume=$work/volume
mkdir "$volume"
chown 10001:10001 "$volume"
export rootfs volume image_env image_user workdir path
unshare --mount --fork bash -euo pipefail -c '
    mount --make-rprivate /
    mnt=$(dirname "$rootfs")/mnt
    mkdir "$mnt"
    mount --bind "$rootfs" "$mnt"
    mount -o remount,bind,ro "$mnt"
    mount --bind "$volume" "$mnt/var/lib/sesame/var"
    mount -t tmpfs -o mode=1777 tmpfs "$mnt/tmp"
    mount -t proc proc "$mnt/proc"
    mount --rbind /dev "$mnt/dev"
    as_user="chroot --userspec=$image_user:$image_user $mnt /usr/bin/env -i -C $workdir PATH=$path HOME=/var/lib/sesame $image_env"
    [ "$($as_user id -u)" = 10001 ]
    if $as_user touch /usr/local/bin/written 2>/dev/null; then echo "the root filesystem is writable" >&2; exit 1; fi
    tools/serve-probe.sh "$(dirname "$rootfs")/serve.log" "$as_user sesame serve" "$as_user sesame health"
'
ended=$(date +%s)

size=$(du -sb --exclude=./proc --exclude=./sys "$rootfs" | cut -f1)
venv=$(du -sb "$rootfs/opt/sesame" | cut -f1)
printf 'image root filesystem: %d MiB (of which the venv /opt/sesame: %d MiB); built in %d s, checked in %d s\n' \
    $((size / 1048576)) $((venv / 1048576)) $((built - started)) $((ended - built))
echo "image root filesystem from Debian 12 packages: installed by tools/image-install.sh, served as" \
    "$image_user read-only (sesame health: SERVING), drained on SIGTERM. The Docker build itself was NOT run."
