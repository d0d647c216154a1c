# shellcheck shell=bash
# A real systemd for the system tier: a Debian tree (debootstrap, once per run of the file)
# booted with systemd-nspawn as the container's PID 1, with its own network namespace
# (--private-network: nothing inside touches the host's interfaces), driven with nsenter into
# that PID 1's namespaces. nspawn_cleanup stops the container by PID and removes the tree,
# also when setup failed half way.
#
# Load after test_helper and snap_helper. Variables (exported by nspawn_setup for the tests):
#   NSPAWN_DIR   the run's temp dir; NSPAWN_TREE the container's root inside it
#   NSPAWN_PID   systemd-nspawn's PID; NSPAWN_LEADER the container's PID 1 (on the host)
#   NSPAWN_OWNER the owner user made in the container (alice); NSPAWN_OTHER another (bob)

NSPAWN_SUITE="${BANGER_TEST_DEBIAN_SUITE:-bookworm}"
NSPAWN_MIRROR="${BANGER_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# BANGER_TEST_DEBOOTSTRAP_CACHE=DIR keeps the downloaded packages there for the next run.
# What the tree needs besides systemd: the tools banger's steps and helper run.
NSPAWN_PACKAGES="systemd,systemd-sysv,dbus,iproute2,nftables,e2fsprogs,openssh-client,procps"

# nspawn_missing: prints what this host lacks for the tier (nothing when it can run).
nspawn_missing() {
    [ "$(id -u)" -eq 0 ] || { echo "root"; return; }
    local t
    for t in systemd-nspawn debootstrap nsenter; do
        command -v "$t" >/dev/null || { echo "$t (apt-get install systemd-container debootstrap util-linux)"; return; }
    done
}

# inside CMD...: runs CMD in the container as root, with a clean environment.
inside() {
    nsenter --target "$NSPAWN_LEADER" --all --root --wd -- \
        /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 "$@"
}

# as_user USER CMD...: runs CMD in the container as USER (its groups, home, clean env).
as_user() {
    local u=$1
    shift
    inside setpriv --reuid="$u" --regid="$u" --init-groups --reset-env -- "$@"
}

# as_owner CMD...: as the owner.
as_owner() { as_user "$NSPAWN_OWNER" "$@"; }

# stage_build DEST [MARKER]: a prefix (bin/, share/) inside the tree with this checkout's build:
# the binaries (stripped, so copies are quick; with MARKER appended to each, so every file
# differs from another staging's), the man pages and the generated completions.
stage_build() {
    local dest="$NSPAWN_TREE$1" marker=${2:-} b name
    mkdir -p "$dest/bin" "$dest/share/man/man1" "$dest/share/man/man7" "$dest/share/man/man8" \
        "$dest/share/bash-completion/completions" "$dest/share/zsh/site-functions" \
        "$dest/share/fish/vendor_completions.d"
    for b in "$BIN"/banger "$BIN"/banger-*; do
        name=$(basename "$b")
        case "$name" in *.d | *standin*) continue ;; esac
        [ -x "$b" ] && [ -f "$b" ] || continue
        if command -v strip >/dev/null; then
            strip -o "$dest/bin/$name" "$b"
        else
            cp "$b" "$dest/bin/$name"
        fi
        [ -z "$marker" ] || printf '\nbanger test build %s\n' "$marker" >>"$dest/bin/$name"
    done
    cp "$REPO"/man/*.1 "$dest/share/man/man1/"
    cp "$REPO"/man/*.7 "$dest/share/man/man7/"
    cp "$REPO"/man/*.8 "$dest/share/man/man8/"
    # The completions each binary generates from its flag table (as make install does).
    for b in "$BIN"/banger "$BIN"/banger-*; do
        name=$(basename "$b")
        case "$name" in *.d) continue ;; esac
        BANGER_GENERATE=describe "$b" --help 2>/dev/null | grep -q '"type":"command"' || continue
        BANGER_GENERATE=bash "$b" --help >"$dest/share/bash-completion/completions/$name"
        BANGER_GENERATE=zsh "$b" --help >"$dest/share/zsh/site-functions/_$name"
        BANGER_GENERATE=fish "$b" --help >"$dest/share/fish/vendor_completions.d/$name.fish"
    done
    chmod -R a+rX "$dest"
}

# nspawn_boot: boots the tree; waits until systemd says the system is up.
nspawn_boot() {
    local _ kid
    NSPAWN_MACHINE="banger-t-$$"
    local extra=()
    # banger up checks /dev/kvm before any step: the host's when it has one (the real
    # Firecracker needs it; the stand-in only needs it to be there).
    [ -e /dev/kvm ] && extra=(--bind=/dev/kvm)
    systemd-nspawn --boot --register=no --keep-unit --private-network --console=passive \
        --machine="$NSPAWN_MACHINE" "${extra[@]}" -D "$NSPAWN_TREE" \
        </dev/null >"$NSPAWN_DIR/nspawn.log" 2>&1 3>&- &
    NSPAWN_PID=$!
    export NSPAWN_PID NSPAWN_MACHINE
    for _ in $(seq 1 300); do
        kid=$(cat /proc/"$NSPAWN_PID"/task/*/children 2>/dev/null | awk '{print $1}')
        if [ -n "$kid" ] && [ "$(cat /proc/"$kid"/comm 2>/dev/null)" = systemd ]; then
            NSPAWN_LEADER=$kid
            export NSPAWN_LEADER
            break
        fi
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "${NSPAWN_LEADER:-}" ]; then
        echo "systemd-nspawn did not start systemd; its log:" >&2
        cat "$NSPAWN_DIR/nspawn.log" >&2
        return 1
    fi
    # Until systemd answers on its bus and has finished starting up.
    local state=""
    for _ in $(seq 1 450); do
        state=$(inside systemctl is-system-running 2>&1) || true
        case "$state" in
            running | degraded)
                # A host without /dev/kvm (a CI container) runs only the stand-in here: a
                # node in the container's own /dev satisfies the preflight (STAND-IN: the
                # stand-in Firecracker never opens it).
                [ -e /dev/kvm ] || inside mknod -m 0600 /dev/kvm c 10 232 || return 1
                return 0
                ;;
        esac
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.2
    done
    echo "the container's systemd is not up ($state); its log:" >&2
    cat "$NSPAWN_DIR/nspawn.log" >&2
    return 1
}

# Real Firecracker (BANGER_TEST_FIRECRACKER, BANGER_TEST_JAILER, /dev/kvm and the rig's tiny
# guest source), or the stand-ins: what the VM tests wait for on the console.
NSPAWN_RIG="${BANGER_TEST_RIG:-$REPO/../shared/rig}"
NSPAWN_REAL_FC=""
# shellcheck disable=SC2034  # used by system-nspawn.bats
GUEST_READY=STANDIN_GUEST_READY
if [ -n "${BANGER_TEST_FIRECRACKER:-}" ] && [ -n "${BANGER_TEST_JAILER:-}" ] && [ -e /dev/kvm ] \
    && [ -f "$NSPAWN_RIG/tiny-guest.S" ]; then
    NSPAWN_REAL_FC=1
    # shellcheck disable=SC2034
    GUEST_READY=TINY_GUEST_READY
fi

# nspawn_setup: the whole tier's fixture. Exports what the tests use.
nspawn_setup() {
    NSPAWN_DIR="$(mktemp -d /var/tmp/banger-nspawn.XXXXXX)"
    NSPAWN_TREE="$NSPAWN_DIR/tree"
    NSPAWN_OWNER=alice
    NSPAWN_OTHER=bob
    export NSPAWN_DIR NSPAWN_TREE NSPAWN_OWNER NSPAWN_OTHER
    local t0=$SECONDS cache=()
    # A directory of downloaded packages to reuse between runs, only when asked for.
    if [ -n "${BANGER_TEST_DEBOOTSTRAP_CACHE:-}" ]; then
        mkdir -p "$BANGER_TEST_DEBOOTSTRAP_CACHE"
        cache=(--cache-dir="$(realpath "$BANGER_TEST_DEBOOTSTRAP_CACHE")")
    fi
    if ! debootstrap --variant=minbase "${cache[@]}" --include="$NSPAWN_PACKAGES" "$NSPAWN_SUITE" \
        "$NSPAWN_TREE" "$NSPAWN_MIRROR" >"$NSPAWN_DIR/debootstrap.log" 2>&1; then
        echo "debootstrap failed; the end of its log:" >&2
        tail -20 "$NSPAWN_DIR/debootstrap.log" >&2
        return 1
    fi
    echo "# nspawn tier: debootstrap took $((SECONDS - t0)) s" >&3
    chroot "$NSPAWN_TREE" useradd -m -U -s /bin/bash "$NSPAWN_OWNER"
    chroot "$NSPAWN_TREE" useradd -m -U -s /bin/bash "$NSPAWN_OTHER"
    # Firecracker and its jailer in /opt/fc: the real ones with BANGER_TEST_FIRECRACKER and
    # BANGER_TEST_JAILER (and /dev/kvm, bound into the container) booting the rig's tiny guest,
    # else the TEST STAND-INS (tests/standin, not Firecracker) with a fake kernel.
    mkdir -p "$NSPAWN_TREE/opt/fc" "$NSPAWN_TREE/opt/img"
    tiny_rootfs "$NSPAWN_TREE/opt/img/rootfs.ext4" 16M
    if [ -n "$NSPAWN_REAL_FC" ]; then
        cp "$BANGER_TEST_FIRECRACKER" "$NSPAWN_TREE/opt/fc/firecracker"
        cp "$BANGER_TEST_JAILER" "$NSPAWN_TREE/opt/fc/jailer"
        as "$NSPAWN_RIG/tiny-guest.S" -o "$NSPAWN_DIR/tiny.o"
        ld -static -nostdlib -Ttext=0x1000000 -e _start "$NSPAWN_DIR/tiny.o" -o "$NSPAWN_TREE/opt/img/vmlinux"
        strip "$NSPAWN_TREE/opt/img/vmlinux"
        echo "# nspawn tier: REAL Firecracker $BANGER_TEST_FIRECRACKER and jailer, the rig's tiny guest" >&3
    else
        cp "$STANDIN_FIRECRACKER" "$NSPAWN_TREE/opt/fc/firecracker"
        cp "$STANDIN_JAILER" "$NSPAWN_TREE/opt/fc/jailer"
        fake_kernel "$NSPAWN_TREE/opt/img/vmlinux"
    fi
    chmod -R a+rX "$NSPAWN_TREE/opt"
    t0=$SECONDS
    nspawn_boot || return 1
    echo "# nspawn tier: the container booted in $((SECONDS - t0)) s" >&3
}

# nspawn_cleanup: stops the container (TERM to systemd-nspawn, which shuts the container
# down; KILL after 20 s) and removes the tree. Safe to call twice or after a failed setup.
nspawn_cleanup() {
    local _
    if [ -n "${NSPAWN_PID:-}" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null
        for _ in $(seq 1 200); do
            kill -0 "$NSPAWN_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            [ -n "${NSPAWN_LEADER:-}" ] && kill -KILL "$NSPAWN_LEADER" 2>/dev/null
            kill -KILL "$NSPAWN_PID" 2>/dev/null
        fi
        wait "$NSPAWN_PID" 2>/dev/null
    fi
    NSPAWN_PID=""
    if [ -n "${NSPAWN_DIR:-}" ] && [ -d "$NSPAWN_DIR" ]; then
        # Never delete through a mount that is still there.
        if grep -qF " $NSPAWN_DIR/" /proc/self/mountinfo; then
            echo "nspawn tier: mounts remain under $NSPAWN_DIR; not deleting it" >&2
            return 1
        fi
        rm -rf "$NSPAWN_DIR"
    fi
    NSPAWN_DIR=""
}
