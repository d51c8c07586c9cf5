# A minimal Debian 12 root filesystem with mmdebstrap, shared by tools/fresh-debian-check.sh (the README's
# fresh machine) and tools/image-check.sh (the image's runtime root filesystem). Sourced, not run.
#
# debian_rootfs TARGET PACKAGES [mmdebstrap options...]
#   TARGET: a directory to create, or /dev/null with --format=null (nothing kept); PACKAGES: comma-separated,
#   added to the minbase variant (which has no Python). The options (hooks, mostly) follow ours.
# Needs mmdebstrap on a Debian or Ubuntu host and the Debian registry; as root (chroot mode) or where user
# namespaces are allowed (unshare mode).
debian_rootfs() {
    local target=$1 packages=$2
    shift 2
    # The host's own local CAs (a TLS-inspecting proxy's, say) come along, so apt, pip and npm trust what it
    # trusts.
    # PACKAGES must name ca-certificates.
    local trust_local_cas='if [ -n "$(ls /usr/local/share/ca-certificates 2>/dev/null)" ]; then
        cp -r /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/"
        chroot "$1" update-ca-certificates >/dev/null
    fi'
    # --skip: mmdebstrap would otherwise put its own policy-rc.d and a dummy start-stop-daemon in place while
    # the hooks run, and hide whether tools/apt-install.sh keeps services from starting as it does on a
    # machine or in a Docker build.
    mmdebstrap --variant=minbase --skip=chroot/policy-rc.d --skip=chroot/start-stop-daemon \
        --include="$packages" \
        --customize-hook="$trust_local_cas" \
        "$@" \
        bookworm "$target"
}
