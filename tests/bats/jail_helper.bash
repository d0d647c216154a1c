# banger-jail's own test helpers. Load after test_helper:
#   load test_helper
#   load jail_helper
#
# Every jail test runs in a private mount namespace of its own: a holder process made with
# `unshare -m --propagation private` keeps it alive, and the helper and every banger-jail
# command of the test enter it with nsenter, so no mount a test makes reaches the host.
# Teardown kills only the Firecracker PIDs named by this test's pidfiles (after checking their
# comm), then the namespace holder, and removes the test's jail dir.

# jail_env: the stand-ins as Firecracker and jailer, a world-traversable jail dir (the owner
# uid must reach its files), an image with a kernel, and a VM dir with a disk.
jail_env() {
    export BANGER_FIRECRACKER="$STANDIN_FIRECRACKER"
    export BANGER_JAILER="$STANDIN_JAILER"
    export BANGER_OWNER_UID="$OWNER_UID"
    JAIL_TMP="$(mktemp -d /tmp/banger-jail-bats.XXXXXX)"
    chmod 0755 "$JAIL_TMP"
    export BANGER_JAIL_DIR="$JAIL_TMP/jail"
    # Short and traversable: the direct launcher runs as the owner uid without a chroot.
    export BANGER_STATE_DIR="$JAIL_TMP/state"
    export BANGER_RUN_DIR="$JAIL_TMP/run"
    mkdir -p "$BANGER_STATE_DIR/images/tiny" "$BANGER_RUN_DIR"
    chmod -R a+rX "$BANGER_STATE_DIR"
    printf 'not really a kernel\n' >"$BANGER_STATE_DIR/images/tiny/vmlinux"
    echo '{"name":"tiny","boot_args":"console=ttyS0"}' >"$BANGER_STATE_DIR/images/tiny/image.json"
    NS_PID=""
}

# ns_start: the test's private mount namespace.
ns_start() {
    unshare -m --propagation private sleep 100000 3>&- &
    NS_PID=$!
    local _
    for _ in $(seq 1 100); do
        [ "$(readlink /proc/$NS_PID/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] && return 0
        sleep 0.01
    done
    echo "mount namespace did not come up" >&2
    return 1
}

# in_ns CMD...: runs CMD in the test's mount namespace.
in_ns() {
    nsenter -t "$NS_PID" -m -- "$@"
}

# jail_start_helper [flags]: a banger-helper inside the test's namespace.
jail_start_helper() {
    # nsenter execs the helper: $! is the helper itself.
    nsenter -t "$NS_PID" -m -- banger-helper --socket "$BANGER_HELPER_SOCKET" --owner "$OWNER_UID" "$@" \
        2>>"$BATS_TEST_TMPDIR/helper.log" 3>&- &
    HELPER_PID=$!
    local _
    for _ in $(seq 1 200); do
        [ -S "$BANGER_HELPER_SOCKET" ] && socat -t 2 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET" \
            <<<'{"op":"ping"}' 2>/dev/null | grep -q '"ok":true' && return 0
        kill -0 "$HELPER_PID" 2>/dev/null || { cat "$BATS_TEST_TMPDIR/helper.log" >&2; return 1; }
        sleep 0.02
    done
    echo "helper did not come up" >&2
    return 1
}

# vm_name: a VM name no other test (or test run) uses.
vm_name() {
    echo "j$$-${BATS_TEST_NUMBER}"
}

# vm_record NAME [DISK]: a VM record with spec and snap sections (the snap step's output),
# saved in the store and printed; the disk a small ext4 file in the VM's dir.
vm_record() {
    local name=$1 disk=${2:-}
    mkdir -p "$BANGER_STATE_DIR/vms/$name"
    chmod 0755 "$BANGER_STATE_DIR/vms" "$BANGER_STATE_DIR/vms/$name"
    if [ -z "$disk" ]; then
        disk="$BANGER_STATE_DIR/vms/$name/disk.ext4"
        mkfs.ext4 -q -F "$disk" 8M >/dev/null
        # The VM's disk is the owner's (banger-snap makes it as the owner): the helper opens it
        # with the owner's credentials.
        chown -R "$OWNER_UID:$OWNER_UID" "$BANGER_STATE_DIR/vms/$name"
    fi
    # Saved before it is printed: a step reading the line loads the stored record at once
    # (`tee` would print it before the file is written).
    jq -cn --arg n "$name" --arg d "$disk" \
        '{v:1,type:"vm",name:$n,spec:{image:"tiny",vcpus:2,mem_mib:256},snap:{method:"copy",path:$d}}' \
        >"$BANGER_STATE_DIR/vms/$name/vm.json"
    cat "$BANGER_STATE_DIR/vms/$name/vm.json"
}

# fc_pids: the Firecracker PIDs this test's pidfiles name, checked by comm.
fc_pids() {
    local f pid
    for f in "$BANGER_JAIL_DIR"/*/*/root/*.pid "$BANGER_JAIL_DIR"/direct/*/firecracker.pid; do
        [ -f "$f" ] || continue
        pid=$(tr -d '[:space:]' <"$f")
        [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = firecracker ] && echo "$pid"
    done
    return 0
}

# alive PID: running and not a zombie.
alive() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# assert_nothing_left NAME: no live process with the VM's id, no jail dir, no ledger entry.
assert_nothing_left() {
    local name=$1 p
    # Test VM names are unique to the test (see vm_name), so any live process with the
    # name's --id is this test's.
    for p in $(pgrep -f -- "--id $name( |\$)" || true); do
        if alive "$p"; then
            echo "process $p with --id $name still runs: $(tr '\0' ' ' <"/proc/$p/cmdline")" >&2
            return 1
        fi
    done
    [ ! -e "$BANGER_JAIL_DIR/firecracker/$name" ] || { echo "chroot of $name left" >&2; return 1; }
    [ ! -e "$BANGER_JAIL_DIR/direct/$name" ] || { echo "direct dir of $name left" >&2; return 1; }
    if [ -f "$BANGER_ROOT_DIR/ledger.json" ]; then
        ledger_jq -e --arg n "$name" '[.entries[] | select(.vm == $n)] | length == 0' >/dev/null || { echo "ledger entries of $name left" >&2; return 1; }
    fi
}

# loops_under DIR: loop devices whose backing file lies under DIR.
loops_under() {
    losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null |
        awk -v d="$1/" 'index($2, d) == 1 { print $1 }'
}

jail_teardown() {
    local pid l rc=0
    for pid in $(fc_pids); do kill -9 "$pid" 2>/dev/null || true; done
    stop_helper
    if [ -n "${NS_PID:-}" ]; then
        kill "$NS_PID" 2>/dev/null || true
        wait "$NS_PID" 2>/dev/null || true
    fi
    if [ -n "${JAIL_TMP:-}" ]; then
        # Loop devices the test attached to its own files, also when it failed before
        # detaching them; one that will not go fails the test (it would outlive the run,
        # attached to a deleted file).
        for l in $(loops_under "$JAIL_TMP"); do losetup -d "$l" 2>/dev/null || true; done
        for _ in $(seq 1 50); do [ -z "$(loops_under "$JAIL_TMP")" ] && break; sleep 0.1; done
        if [ -n "$(loops_under "$JAIL_TMP")" ]; then
            echo "loop devices left on this test's files: $(loops_under "$JAIL_TMP")" >&2
            rc=1
        fi
    fi
    # The mounts lived in the test's namespace only; nothing here is a mount point.
    if [ -n "${JAIL_TMP:-}" ] && [ $rc -eq 0 ] && ! grep -qF " $JAIL_TMP" /proc/self/mountinfo; then
        rm -rf "$JAIL_TMP"
    fi
    banger_teardown
    return $rc
}
