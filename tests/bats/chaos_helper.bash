# shellcheck shell=bash disable=SC2034  # variables here are used by chaos.bats
# Helpers for chaos.bats: pipelines that get killed, helpers that die, races. Load after
# test_helper, net_helper and snap_helper.
#
# The world of one test: a network namespace H of its own (net_env) and a private mount
# namespace, both held by one process ($HOLDER). The helper (restarted as often as a test
# likes) and every step enter both with nsenter, so all helper instances share one mount
# namespace, as they would on a real host, and nothing reaches the host's. The state dir is
# a reflink XFS loop-mounted inside that mount namespace only; when the holder and the last
# process in the namespace are gone, it unmounts itself and its loop device goes with it.
# Steps run as the owner uid ($OWNER_UID), the way a user runs them.
#
# VM names carry the test's pid ($CHAOS_TAG), so process checks can be scoped to them.

chaos_env() {
    HOLDER=""
    P_TMP=""
    net_env
    P_TMP="$(mktemp -d /tmp/banger-chaos.XXXXXX)"
    chmod 0755 "$P_TMP"
    CHAOS_TAG="c$$"
    export BANGER_FIRECRACKER="$STANDIN_FIRECRACKER" BANGER_JAILER="$STANDIN_JAILER"
    export BANGER_OWNER_UID="$OWNER_UID"
    export BANGER_RUN_DIR="$P_TMP/run" BANGER_JAIL_DIR="$P_TMP/jail"
    export BANGER_STATE_DIR="$P_TMP/xfs/state" BANGER_CONFIG_DIR="$P_TMP/etc"
    mkdir -p "$BANGER_RUN_DIR" "$BANGER_CONFIG_DIR" "$P_TMP/xfs"
    chown "$OWNER_UID:$OWNER_UID" "$BANGER_RUN_DIR"
    # The holder: in H's network namespace, in a private mount namespace of its own.
    ip netns exec "$NS_H" unshare -m --propagation private sleep 100000 3>&- &
    HOLDER=$!
    local _
    # Both namespaces are in place once `ip` and `unshare` have exec'ed the sleep.
    for _ in $(seq 1 250); do
        [ "$(cat /proc/"$HOLDER"/comm 2>/dev/null)" = sleep ] && break
        sleep 0.02
    done
    [ "$(cat /proc/"$HOLDER"/comm 2>/dev/null)" = sleep ] || { echo "namespace holder did not start" >&2; return 1; }
    truncate -s 1G "$P_TMP/xfs.img"
    mkfs.xfs -q -m reflink=1 "$P_TMP/xfs.img"
    in_world mount -o loop "$P_TMP/xfs.img" "$P_TMP/xfs"
    in_world mkdir -p "$BANGER_STATE_DIR"
    in_world chmod 0755 "$P_TMP/xfs"
}

# in_world CMD...: CMD as root in the test's network and mount namespaces.
in_world() {
    nsenter -t "$HOLDER" -m -n -- "$@"
}

# as_owner CMD...: CMD as the owner uid in the test's namespaces.
as_owner() {
    nsenter -t "$HOLDER" -m -n -- setpriv --reuid="$OWNER_UID" --regid="$OWNER_UID" --clear-groups -- "$@"
}

# chaos_helper_start: a helper in the test's namespaces (as often as a test likes).
chaos_helper_start() {
    rm -f "$BANGER_HELPER_SOCKET"
    nsenter -t "$HOLDER" -m -n -- banger-helper --socket "$BANGER_HELPER_SOCKET" --owner "$OWNER_UID" \
        2>>"$BATS_TEST_TMPDIR/helper.log" 3>&- &
    HELPER_PID=$!
    local _
    for _ in $(seq 1 250); do
        helper_answers && return 0
        kill -0 "$HELPER_PID" 2>/dev/null || { tail -5 "$BATS_TEST_TMPDIR/helper.log" >&2; return 1; }
        sleep 0.02
    done
    echo "helper did not come up" >&2
    return 1
}

# chaos_image: the default image, owned by the owner like the rest of the state dir.
chaos_image() {
    tiny_rootfs "$P_TMP/default.ext4" 16M
    fake_kernel "$P_TMP/default.vmlinux"
    in_world banger-image import default --rootfs "$P_TMP/default.ext4" --kernel "$P_TMP/default.vmlinux" >/dev/null
    # banger's own SSH key, made here: ssh-keygen wants a passwd entry the owner uid lacks.
    in_world mkdir -p "$BANGER_STATE_DIR/ssh"
    in_world ssh-keygen -q -t ed25519 -N '' -C banger -f "$BANGER_STATE_DIR/ssh/id_ed25519"
    in_world chown -R "$OWNER_UID:$OWNER_UID" "$BANGER_STATE_DIR"
}

# up NAME [banger up flags]: banger up as the owner, waiting for the stand-in's console line.
up() {
    local n=$1
    shift
    as_owner banger up "$n" --wait-console STANDIN_GUEST_READY --timeout 60 "$@"
}

# up_detached NAME: `up` in a process group (session) of its own; its pid (= the group's
# id) is in $UP_PID.
up_detached() {
    setsid nsenter -t "$HOLDER" -m -n -- setpriv --reuid="$OWNER_UID" --regid="$OWNER_UID" --clear-groups -- \
        banger up "$1" --wait-console STANDIN_GUEST_READY --timeout 60 >/dev/null 2>>"$BATS_TEST_TMPDIR/killed.log" &
    UP_PID=$!
}

# steps_of PGID: the step processes (banger-vm, -snap, -net, -jail) of a process group.
steps_of() {
    pgrep -g "$1" -x 'banger-(vm|snap|net|jail)' 2>/dev/null || true
}

# ms_sleep MAX: sleeps a random 0..MAX milliseconds.
ms_sleep() {
    sleep "$(printf '0.%03d' $((RANDOM % ($1 + 1))))"
}

# fc_alive NAME: true when a Firecracker with --id NAME runs.
fc_alive() {
    local p
    for p in $(pgrep -x firecracker 2>/dev/null || true); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qE -- "--id $1( |\$)" && return 0
    done
    return 1
}

# ledger_has NAME KIND: the ledger holds an entry of KIND for NAME.
ledger_has() {
    [ -f "$BANGER_ROOT_DIR/ledger.json" ] &&
        ledger_jq -e --arg n "$1" --arg k "$2" 'any(.entries[]; .vm == $n and .kind == $k)' >/dev/null
}

# stored NAME: the stored record (the store is the truth), or nothing.
stored() {
    in_world cat "$BANGER_STATE_DIR/vms/$1/vm.json" 2>/dev/null || true
}

# consistent NAME: the record matches the process table, the taps and the ledger:
#   jail section  <=> a live Firecracker with --id NAME <=> a jail entry in the ledger
#   net section   <=> its tap exists in H               <=> a tap entry in the ledger
#   vm.state running/paused => a jail section
consistent() {
    local n=$1 rec has_jail fc ledger_jail has_net tap tap_exists ledger_tap state
    rec=$(stored "$n")
    [ -n "$rec" ] || { echo "$n: no record" >&2; return 1; }
    has_jail=$(jq -r 'has("jail")' <<<"$rec")
    fc=false; fc_alive "$n" && fc=true
    ledger_jail=false; ledger_has "$n" jail && ledger_jail=true
    has_net=$(jq -r 'has("net")' <<<"$rec")
    tap=$(jq -r '.net.tap // empty' <<<"$rec")
    tap_exists=false
    [ -n "$tap" ] && ip -n "$NS_H" link show "$tap" >/dev/null 2>&1 && tap_exists=true
    ledger_tap=false; ledger_has "$n" tap && ledger_tap=true
    state=$(jq -r '.vm.state // "none"' <<<"$rec")
    local bad=""
    [ "$has_jail" = "$fc" ] || bad+=" jail-section=$has_jail firecracker=$fc;"
    [ "$has_jail" = "$ledger_jail" ] || bad+=" jail-section=$has_jail ledger-jail=$ledger_jail;"
    [ "$has_net" = "$ledger_tap" ] || bad+=" net-section=$has_net ledger-tap=$ledger_tap;"
    [ "$has_net" = false ] || [ "$tap_exists" = true ] || bad+=" net-section but tap $tap missing;"
    case "$state" in running | paused) [ "$has_jail" = true ] || bad+=" state $state without a jail;" ;; esac
    if [ -n "$bad" ]; then
        echo "$n: record and reality differ:$bad" >&2
        echo "$rec" >&2
        return 1
    fi
}

# retired_gone: waits (5 s at most) until the helper has removed the taps `banger down`
# retired (it answers first and removes them a few ms later, see banger-net(1)): no `bgz`
# interface left in H, no retired entry in the ledger.
retired_gone() {
    local _
    for _ in $(seq 1 250); do
        if ! ip -n "$NS_H" -o link show | grep -q ': bgz' &&
            ! ledger_jq -e 'any(.entries[]; .data.retired != null)' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.02
    done
    echo "retired taps still there after 5 s" >&2
    return 1
}

# nothing_left NAME...: after down + rm, nothing of these VMs (or of the test) is left:
# records, lock files, temp files, taps, bridges, nft rules, mounts, loop devices,
# Firecrackers, console keepers, jail files, ledger entries.
nothing_left() {
    local n bad="" left
    retired_gone || bad+=" retired-taps"
    for n in "$@"; do
        in_world test -e "$BANGER_STATE_DIR/vms/$n" && bad+=" record-dir:$n"
        in_world test -e "$BANGER_STATE_DIR/locks/$n.lock" && bad+=" lock:$n"
        fc_alive "$n" && bad+=" firecracker:$n"
        if [ -f "$BANGER_ROOT_DIR/ledger.json" ] &&
            ledger_jq -e --arg n "$n" 'any(.entries[]; .vm == $n)' >/dev/null; then
            bad+=" ledger:$n"
        fi
    done
    left=$(in_world banger-vm list 2>&1) || bad+=" list-failed"
    [ -z "$left" ] || bad+=" records:$(jq -r .name <<<"$left" 2>/dev/null | tr '\n' ' ')"
    left=$(in_world find "$BANGER_STATE_DIR" "$BANGER_ROOT_DIR" -name '.*.tmp.*' 2>/dev/null)
    [ -z "$left" ] || bad+=" temp-files:$left"
    left=$(ip -n "$NS_H" -o link show | awk -F': ' '{print $2}' | grep -v '^lo$' || true)
    [ -z "$left" ] || bad+=" links:$(echo "$left" | tr '\n' ' ')"
    left=$(ip netns exec "$NS_H" nft list ruleset 2>/dev/null)
    [ -z "$left" ] || bad+=" nft:$(echo "$left" | head -3 | tr '\n' ' ')"
    left=$(grep -F " $BANGER_JAIL_DIR" /proc/"$HOLDER"/mountinfo || true)
    [ -z "$left" ] || bad+=" mounts:$(echo "$left" | awk '{print $5}' | tr '\n' ' ')"
    left=$(loops_of "$P_TMP" | grep -vx "$(losetup -j "$P_TMP/xfs.img" -O NAME -n 2>/dev/null || echo none)" || true)
    [ -z "$left" ] || bad+=" loops:$left"
    left=$(pgrep -f -- "banger-console-keeper.*$BANGER_JAIL_DIR" || true)
    [ -z "$left" ] || bad+=" keepers:$left"
    left=$(find "$BANGER_JAIL_DIR" -mindepth 2 2>/dev/null | head -5)
    [ -z "$left" ] || bad+=" jail-files:$(echo "$left" | tr '\n' ' ')"
    if [ -n "$bad" ]; then
        echo "left behind:$bad" >&2
        return 1
    fi
}

# chaos_teardown: kills the Firecrackers this test's pidfiles name (checked by comm), the
# helper and the holder (the mount namespace and its XFS go with it), then net_teardown.
chaos_teardown() {
    local f pid rc=0
    for f in ${P_TMP:+"$P_TMP"/jail/*/*/root/*.pid}; do
        [ -f "$f" ] || continue
        pid=$(tr -d '[:space:]' <"$f")
        case "$(cat /proc/"$pid"/comm 2>/dev/null)" in firecracker*) kill -9 "$pid" 2>/dev/null ;; esac
    done
    # Also any whose pidfile went missing: Firecrackers with this test's VM names, and console
    # keepers of this test's jail dir (both unique to this test).
    if [ -n "${CHAOS_TAG:-}" ]; then
        for pid in $(pgrep -x firecracker || true); do
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE -- "--id $CHAOS_TAG-" && kill -9 "$pid" 2>/dev/null || true
        done
    fi
    if [ -n "${P_TMP:-}" ]; then
        for pid in $(pgrep -f -- "banger-console-keeper.*$P_TMP/jail" || true); do kill -9 "$pid" 2>/dev/null; done
    fi
    stop_helper
    if [ -n "${HOLDER:-}" ]; then
        kill "$HOLDER" 2>/dev/null || true
        wait "$HOLDER" 2>/dev/null || true
    fi
    net_teardown || rc=$?
    if [ -n "${P_TMP:-}" ]; then
        # The XFS went with the mount namespace; its loop device detaches itself (autoclear).
        local l
        for _ in $(seq 1 50); do [ -z "$(loops_of "$P_TMP")" ] && break; sleep 0.1; done
        for l in $(loops_of "$P_TMP"); do losetup -d "$l" 2>/dev/null || true; done
        [ -z "$(loops_of "$P_TMP")" ] || { echo "loop devices left: $(loops_of "$P_TMP")" >&2; rc=1; }
        grep -qF " $P_TMP" /proc/self/mountinfo || rm -rf "$P_TMP"
    fi
    return $rc
}
