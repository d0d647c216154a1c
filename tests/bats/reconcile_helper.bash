# shellcheck shell=bash
# Helpers for reconcile.bats (and the reconcile bench). Load after chaos_helper: they use its
# world (namespaces held by $HOLDER, the owner uid, $CHAOS_TAG-prefixed VM names).

# reconcile [FLAGS...]: banger-reconcile as the owner, as the timer runs it.
reconcile() {
    as_owner banger-reconcile "$@"
}

# fc_pid NAME: the pid of the live Firecracker with --id NAME.
fc_pid() {
    local p
    for p in $(pgrep -x firecracker 2>/dev/null || true); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qE -- "--id $1( |\$)" && { echo "$p"; return 0; }
    done
    return 1
}

# world_state: what a read-only run must not change: the records and every file in the VM
# directories, the ledger, the links and ruleset of H, the jail dir, this test's Firecrackers.
world_state() {
    retired_gone
    in_world find "$BANGER_STATE_DIR/vms" "$BANGER_RUN_DIR" "$BANGER_JAIL_DIR" -printf '%p %s %T@\n' 2>/dev/null | sort
    banger-helper --print-ledger 2>/dev/null
    ip -n "$NS_H" -o link show | awk -F': ' '{print $2}'
    ip netns exec "$NS_H" nft list ruleset 2>/dev/null
    pgrep -f -- "--id $CHAOS_TAG-" | sort
}

# kill_some PGID: SIGKILL the whole `banger up` process group, or one of its steps.
kill_some() {
    local victims
    victims=$(steps_of "$1")
    if [ $((RANDOM % 2)) -eq 0 ] || [ -z "$victims" ]; then
        kill -9 -- "-$1" 2>/dev/null || true
    else
        kill -9 "$(shuf -n 1 <<<"$victims")" 2>/dev/null || true
    fi
}

# whole_disks NAME...: the disks of whole VMs (a record naming its disk) and the disks the
# ledger marks whole: none of them may be lost.
whole_disks() {
    local n
    for n in "$@"; do
        stored "$n" | jq -r '.snap.path // empty'
    done
    [ -f "$BANGER_ROOT_DIR/ledger.json" ] &&
        ledger_jq -r '.entries[] | select(.kind == "disk" and .data.complete == true) | .data.cow // .id'
    return 0
}

# consistent_disk NAME: the record's snap section <=> the ledger's disk <=> the disk file.
consistent_disk() {
    local n=$1 rec path
    rec=$(stored "$n")
    path=$(jq -r '.snap.path // empty' <<<"$rec")
    if [ -n "$path" ]; then
        ledger_has "$n" disk || { echo "$n: snap section but no ledger disk" >&2; return 1; }
        in_world test -f "$path" || { echo "$n: disk $path missing" >&2; return 1; }
    else
        ! ledger_has "$n" disk || { echo "$n: ledger disk but no snap section" >&2; return 1; }
    fi
}

# nothing_unaccounted NAME...: every tap, Firecracker, console keeper, mount, jail directory and
# loop device of this test belongs to a record that says so.
nothing_unaccounted() {
    local bad="" l p n id want owner
    for l in $(ip -n "$NS_H" -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^bgr' || true); do
        owner=""
        for n in "$@"; do
            [ "$(stored "$n" | jq -r '.net.tap // empty')" = "$l" ] && owner=$n
        done
        [ -n "$owner" ] || bad+=" tap:$l"
    done
    for p in $(pgrep -x firecracker || true); do
        id=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -A1 -x -- --id | tail -1)
        case "$id" in "$CHAOS_TAG"-*) ;; *) continue ;; esac
        want=$(stored "$id" | jq -r '.jail.pid // empty')
        [ "$want" = "$p" ] || bad+=" firecracker:$id($p, record says ${want:-none})"
    done
    for p in $(pgrep -f -- "banger-console-keeper.*$BANGER_JAIL_DIR" || true); do
        want=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -A1 -x -- --pid | tail -1)
        [ -n "$want" ] && kill -0 "$want" 2>/dev/null || bad+=" keeper:$p"
    done
    for l in $(grep -F " $BANGER_JAIL_DIR/" /proc/"$HOLDER"/mountinfo | awk '{print $5}' || true); do
        n=$(sed "s|^$BANGER_JAIL_DIR/[^/]*/||; s|/.*||" <<<"$l")
        stored "$n" | jq -e 'has("jail")' >/dev/null 2>&1 || bad+=" mount:$l"
    done
    while IFS= read -r l; do
        stored "$(basename "$l")" | jq -e 'has("jail")' >/dev/null 2>&1 || bad+=" jail-dir:$l"
    done < <(find "$BANGER_JAIL_DIR" -mindepth 2 -maxdepth 2 -type d 2>/dev/null)
    l=$(loops_of "$P_TMP" | grep -vx "$(losetup -j "$P_TMP/xfs.img" -O NAME -n 2>/dev/null || echo none)" || true)
    [ -z "$l" ] || bad+=" loops:$l"
    if [ -n "$bad" ]; then
        echo "not accounted for by any record:$bad" >&2
        return 1
    fi
}

# simulate_reboot: what a host restart does to banger's world: every Firecracker and console
# keeper gone, the taps, the bridge and the nft table gone, the jails' mounts gone, the run
# dir (a tmpfs) empty. The jail directories, the records and the ledger stay.
simulate_reboot() {
    local p l
    for p in $(pgrep -x firecracker || true); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qE -- "--id $CHAOS_TAG-" && kill -9 "$p" 2>/dev/null
    done
    for p in $(pgrep -f -- "banger-console-keeper.*$BANGER_JAIL_DIR" || true); do kill -9 "$p" 2>/dev/null; done
    for _ in $(seq 1 100); do
        pgrep -f -- "--id $CHAOS_TAG-" >/dev/null || break
        sleep 0.05
    done
    for l in $(ip -n "$NS_H" -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^(bgr|banger0$)' || true); do
        ip -n "$NS_H" link del "$l"
    done
    ip netns exec "$NS_H" nft delete table inet banger 2>/dev/null || true
    for l in $(grep -F " $BANGER_JAIL_DIR/" /proc/"$HOLDER"/mountinfo | awk '{print $5}' | sort -r); do
        in_world umount -l "$l" 2>/dev/null || true
    done
    in_world sh -c "rm -rf '$BANGER_RUN_DIR'/vms '$BANGER_RUN_DIR'/hosts"
}

# finding NAME COND: reconcile's output ($output, set by bats' run) has a line for NAME (- for
# the host) on which the jq condition COND holds.
finding() {
    # shellcheck disable=SC2154  # output is set by bats' run
    jq -s -e --arg n "$1" "any(.[]; .name == \$n and ($2))" <<<"$output" >/dev/null || {
        echo "no finding for $1 where $2 in:" >&2
        echo "$output" >&2
        return 1
    }
}

# hold_lock FILE: a process that holds the flock on FILE (in the test's mount namespace) in a
# session of its own, until release_lock; $LOCK_HOLDER is its pid.
hold_lock() {
    setsid nsenter -t "$HOLDER" -m -n -- flock "$1" sleep 60 3>&- &
    LOCK_HOLDER=$!
    local _
    for _ in $(seq 1 200); do
        in_world flock -n "$1" true 2>/dev/null || return 0
        sleep 0.02
    done
    echo "the lock holder did not take $1" >&2
    return 1
}

release_lock() {
    kill -- "-$LOCK_HOLDER" 2>/dev/null || true
    wait "$LOCK_HOLDER" 2>/dev/null || true
}

# as_owner_cmd: the command prefix of as_owner, for `timeout` and the like.
as_owner_cmd() {
    echo nsenter -t "$HOLDER" -m -n -- setpriv --reuid="$OWNER_UID" --regid="$OWNER_UID" --clear-groups --
}
