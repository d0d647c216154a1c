# shellcheck shell=bash
# Once per bats run (bats loads this file from the tests' directory).
#
# The tests run banger's binaries (and the Firecracker stand-in) as the owner uid, so that uid
# must reach the build. A checkout under a 0700 directory (a fresh clone in `mktemp -d`, or
# under /root) is out of its reach: then the run gets a world-traversable mirror of the build
# (hard links where the filesystem allows, else copies) under /tmp, used through
# BANGER_TEST_BIN and removed when the run ends. The product itself never depends on it:
# banger-jail starts the console keeper as root (dropping to the owner) when it runs as root.

setup_suite() {
    local repo bin owner=4343
    # A host without KVM (a CI container) runs only the Firecracker stand-ins, which never
    # open /dev/kvm; banger's preflight checks for it before any step, so it is pointed at a
    # node of the run's own (STAND-IN for the KVM device; the real tiers skip without one).
    if [ ! -e /dev/kvm ] && [ "$(id -u)" -eq 0 ] && [ -z "${BANGER_KVM_DEVICE:-}" ]; then
        BANGER_TEST_KVM_DIR="$(mktemp -d /tmp/banger-kvm.XXXXXX)"
        chmod 0755 "$BANGER_TEST_KVM_DIR"
        mknod -m 0666 "$BANGER_TEST_KVM_DIR/kvm" c 10 232
        export BANGER_KVM_DEVICE="$BANGER_TEST_KVM_DIR/kvm" BANGER_TEST_KVM_DIR
        echo "# no /dev/kvm on this host: the stand-in tests' preflight checks $BANGER_KVM_DEVICE (a stand-in node)" >&3
    fi
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    bin="${BANGER_TEST_BIN:-$repo/target/debug}"
    [ "$(id -u)" -eq 0 ] || return 0
    [ -x "$bin/banger" ] || return 0
    if setpriv --reuid="$owner" --regid="$owner" --clear-groups -- test -x "$bin/banger" 2>/dev/null; then
        return 0
    fi
    BANGER_TEST_BIN_MIRROR="$(mktemp -d /tmp/banger-bin.XXXXXX)"
    chmod 0755 "$BANGER_TEST_BIN_MIRROR"
    local f
    for f in "$bin"/*; do
        [ -f "$f" ] && [ -x "$f" ] || continue
        ln "$f" "$BANGER_TEST_BIN_MIRROR/" 2>/dev/null || cp -p "$f" "$BANGER_TEST_BIN_MIRROR/"
    done
    echo "# the build in $bin is out of uid $owner's reach: the tests use a mirror in $BANGER_TEST_BIN_MIRROR" >&3
    export BANGER_TEST_BIN="$BANGER_TEST_BIN_MIRROR" BANGER_TEST_BIN_MIRROR
}

teardown_suite() {
    [ -n "${BANGER_TEST_KVM_DIR:-}" ] && rm -rf "$BANGER_TEST_KVM_DIR"
    [ -n "${BANGER_TEST_BIN_MIRROR:-}" ] && rm -rf "$BANGER_TEST_BIN_MIRROR"
    return 0
}
