#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
# banger-reconcile with the Firecracker and jailer TEST STAND-INS (tests/standin, not
# Firecracker): a helper killed and restarted, a Firecracker killed from outside, pipelines
# killed at random points, a VM directory removed by hand, reconcile racing pipelines, a
# simulated reboot. Each test runs in network and mount namespaces of its own with the state
# dir on a reflink XFS mounted only there (chaos_helper.bash); every step, reconcile included,
# runs as the owner uid, as the timer runs it.

bats_require_minimum_version 1.5.0

load test_helper
load net_helper
load snap_helper
load chaos_helper
load reconcile_helper

setup() {
    chaos_env
    chaos_helper_start
    chaos_image
}

teardown() {
    [ -z "${LOCK_HOLDER:-}" ] || release_lock
    chaos_teardown
}

@test "reconcile (stand-in firecracker): a consistent host has no finding, read-only or with --apply --gc, twice" {
    local a="${CHAOS_TAG}-a" b="${CHAOS_TAG}-b"
    up "$a" >/dev/null
    up "$b" >/dev/null
    as_owner banger down --timeout 1 "$b" >/dev/null
    local before
    before=$(world_state)
    run --separate-stderr reconcile
    assert_success
    assert_output ""
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
    run --separate-stderr reconcile --apply --gc --table
    assert_success
    assert_output ""
    [ "$(world_state)" = "$before" ]
    consistent "$a"
    consistent "$b"
}

@test "reconcile (stand-in firecracker): the helper killed -9 while VMs run and started again: nothing to repair, every VM still answers with the same Firecracker" {
    local n names=() pids=()
    for n in 1 2 3; do
        names+=("${CHAOS_TAG}-h$n")
        up "${CHAOS_TAG}-h$n" >/dev/null
        pids+=("$(fc_pid "${CHAOS_TAG}-h$n")")
    done
    kill -9 "$HELPER_PID"
    wait "$HELPER_PID" 2>/dev/null || true
    chaos_helper_start
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
    local i=0
    for n in "${names[@]}"; do
        [ "$(fc_pid "$n")" = "${pids[$i]}" ]
        as_owner banger-vm status "$n" | jq -e '.vm.live.api_state == "Running"'
        consistent "$n"
        i=$((i + 1))
    done
}

@test "reconcile (stand-in firecracker): a Firecracker killed from outside is marked stopped, its jail and tap freed, and banger up brings it back with its disk intact" {
    local n="${CHAOS_TAG}-k" pid tap disk
    up "$n" >/dev/null
    pid=$(fc_pid "$n")
    tap=$(stored "$n" | jq -r .net.tap)
    disk=$(stored "$n" | jq -r .snap.path)
    # A file in the guest's disk, written before (debugfs: the stand-in has no guest to write it).
    echo "written before the crash $$" >"$P_TMP/marker"
    in_world debugfs -w -R "write $P_TMP/marker /root/marker" "$disk" >/dev/null 2>&1
    kill -9 "$pid"
    for _ in $(seq 1 100); do fc_alive "$n" || break; sleep 0.05; done
    # Read-only: found, planned, nothing changed; exit 1 (something to do).
    local before
    before=$(world_state)
    run --separate-stderr reconcile
    assert_failure 1
    finding "$n" '.kind == "firecracker-gone" and .action == "mark-stopped-and-release" and .result == "planned"' 
    [ "$(world_state)" = "$before" ]
    run --separate-stderr reconcile --apply
    assert_success
    finding "$n" '.kind == "firecracker-gone" and .result == "done"' 
    stored "$n" | jq -e '.vm.state == "stopped" and .vm.stopped_by == "reconcile" and (.vm.stop_reason | test("no Firecracker")) and (has("jail") | not) and (has("net") | not) and .snap.path'
    run ! ledger_has "$n" jail
    run ! ledger_has "$n" tap
    run ! ledger_has "$n" addr
    ledger_has "$n" disk
    run ! ip -n "$NS_H" link show "$tap"
    [ -z "$(find "$BANGER_JAIL_DIR" -mindepth 2 -maxdepth 2 -name "$n")" ]
    in_world test -f "$disk"
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
    up "$n" >/dev/null
    consistent "$n"
    [ "$(in_world debugfs -R "cat /root/marker" "$disk" 2>/dev/null)" = "written before the crash $$" ]
}

@test "reconcile (stand-in firecracker): a removed VM directory's disk entry is dropped, and a new VM of that name comes up" {
    local n="${CHAOS_TAG}-gone"
    up "$n" >/dev/null
    as_owner banger down --timeout 1 "$n" >/dev/null
    in_world rm -rf "$BANGER_STATE_DIR/vms/$n"
    ledger_has "$n" disk
    run --separate-stderr reconcile
    assert_failure 1
    finding "$n" '.kind == "entry-gone" and .action == "drop-entry" and .result == "planned"' 
    ledger_has "$n" disk
    run --separate-stderr reconcile --apply
    assert_success
    run ! ledger_has "$n" disk
    [ "$(ledger_jq --arg n "$n" '[.entries[] | select(.vm == $n)] | length')" -eq 0 ]
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
    up "$n" >/dev/null
    consistent "$n"
}

@test "reconcile (stand-in firecracker): a record that lost its Firecracker's pid, its jail section or its console keeper is re-adopted; the Firecracker is not touched" {
    local n="${CHAOS_TAG}-ad" pid keeper
    up "$n" >/dev/null
    pid=$(fc_pid "$n")
    keeper=$(stored "$n" | jq -r .jail.keeper_pid)
    # A wrong pid in the record (a process that is not its Firecracker).
    in_world sh -c "jq -c '.jail.pid = 1' '$BANGER_STATE_DIR/vms/$n/vm.json' >'$P_TMP/r' && cat '$P_TMP/r' >'$BANGER_STATE_DIR/vms/$n/vm.json'"
    run --separate-stderr reconcile --apply
    assert_success
    finding "$n" '.kind == "pid-changed" and .action == "re-adopt" and .result == "done"'
    [ "$(stored "$n" | jq -r .jail.pid)" = "$pid" ]
    # The console keeper killed.
    kill -9 "$keeper"
    run --separate-stderr reconcile --apply
    assert_success
    finding "$n" '.kind == "readopt" and .result == "done"'
    [ "$(stored "$n" | jq -r .jail.keeper_pid)" != "$keeper" ]
    kill -0 "$(stored "$n" | jq -r .jail.keeper_pid)"
    # The jail section lost (a launch killed before it saved): rebuilt from the ledger.
    in_world sh -c "jq -c 'del(.jail)' '$BANGER_STATE_DIR/vms/$n/vm.json' >'$P_TMP/r' && cat '$P_TMP/r' >'$BANGER_STATE_DIR/vms/$n/vm.json'"
    run --separate-stderr reconcile --apply
    assert_success
    finding "$n" '.kind == "firecracker-unrecorded" and .result == "done"'
    [ "$(stored "$n" | jq -r .jail.pid)" = "$pid" ]
    [ "$(fc_pid "$n")" = "$pid" ]
    as_owner banger-vm status "$n" | jq -e '.vm.live.api_state == "Running"'
    stored "$n" | jq -e '.vm.state == "running"'
    consistent "$n"
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
}

@test "reconcile (stand-in firecracker): a VM whose directory was removed by hand after its Firecracker died: --gc releases its jail, tap and address in reverse order" {
    local n="${CHAOS_TAG}-orphan" tap
    up "$n" >/dev/null
    tap=$(stored "$n" | jq -r .net.tap)
    kill -9 "$(fc_pid "$n")"
    for _ in $(seq 1 100); do fc_alive "$n" || break; sleep 0.05; done
    in_world rm -rf "$BANGER_STATE_DIR/vms/$n"
    run --separate-stderr reconcile --apply
    assert_failure 1
    finding "$n" '.kind == "no-record" and .action == "undo" and .result == "planned"'
    ledger_has "$n" tap
    run --separate-stderr reconcile --apply --gc
    assert_success
    finding "$n" '.kind == "no-record" and .result == "done"'
    [ "$(ledger_jq --arg n "$n" '[.entries[] | select(.vm == $n)] | length')" -eq 0 ]
    run ! ip -n "$NS_H" link show "$tap"
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
    nothing_left "$n"
}

@test "reconcile (stand-in firecracker): 50 pipelines killed at random points: after --apply --gc nothing is leaked, no whole VM's disk is lost, and a second run has nothing to do" {
    local i n names=()
    for i in $(seq 1 50); do
        n="${CHAOS_TAG}-r$i"
        names+=("$n")
        up_detached "$n"
        ms_sleep 400
        kill_some "$UP_PID"
        wait "$UP_PID" 2>/dev/null || true
    done
    # The disks the records name (whole VMs) and the whole disks the ledger holds.
    local kept
    kept=$(whole_disks "${names[@]}")
    run --separate-stderr reconcile --apply --gc
    if [ "$status" -ne 0 ]; then
        echo "$output" >&2
        echo "$stderr" >&2
        false
    fi
    echo "# what reconcile did: $(jq -r '"\(.kind)/\(.action)/\(.result)"' <<<"$output" | sort | uniq -c | tr -s ' \n' ' ')" >&3
    for n in "${names[@]}"; do
        if [ -n "$(stored "$n")" ]; then
            consistent "$n"
            consistent_disk "$n"
        else
            [ "$(ledger_jq --arg n "$n" '[.entries[] | select(.vm == $n)] | length')" -eq 0 ] ||
                { echo "$n: no record but ledger entries" >&2; false; }
        fi
    done
    local d
    for d in $kept; do
        in_world test -f "$d" || { echo "a whole disk was lost: $d" >&2; false; }
    done
    nothing_unaccounted "${names[@]}"
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
    # What is left to remove: the VMs with a record (a name whose banger-vm new was killed
    # before its first write, or whose unfinished write --gc removed, has none).
    local have=()
    for n in "${names[@]}"; do [ -z "$(stored "$n")" ] || have+=("$n"); done
    if [ "${#have[@]}" -gt 0 ]; then
        run --separate-stderr as_owner banger down --timeout 1 "${have[@]}"
        run --separate-stderr as_owner banger rm --yes "${have[@]}"
        [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
    fi
    nothing_left "${names[@]}"
}

@test "reconcile (stand-in firecracker): reconcile --apply --gc over and over while 10 pipelines run: every VM comes up, none is harmed" {
    local i pids=() names=() rc=0
    for i in $(seq 1 10); do
        names+=("${CHAOS_TAG}-p$i")
        up "${CHAOS_TAG}-p$i" >/dev/null 2>>"$BATS_TEST_TMPDIR/ups.log" &
        pids+=($!)
    done
    local runs=0 busy
    while pgrep -f -- "banger-up ${CHAOS_TAG}-p" >/dev/null; do
        reconcile --apply --gc >>"$BATS_TEST_TMPDIR/reconcile.out" 2>>"$BATS_TEST_TMPDIR/reconcile.err" || true
        runs=$((runs + 1))
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    [ "$rc" -eq 0 ] || { cat "$BATS_TEST_TMPDIR/ups.log" >&2; false; }
    echo "# $runs reconcile runs during the ups" >&3
    # Reconcile never acted on a VM a pipeline was making: only busy skips, if anything.
    busy=$(jq -r 'select(.result != "skipped") | "\(.name) \(.kind) \(.result): \(.observed)"' "$BATS_TEST_TMPDIR/reconcile.out")
    [ -z "$busy" ] || { echo "reconcile acted during the ups: $busy" >&2; false; }
    for n in "${names[@]}"; do
        consistent "$n"
        stored "$n" | jq -e '.vm.state == "running"'
        fc_alive "$n"
    done
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
}

@test "reconcile (stand-in firecracker): a simulated reboot (Firecrackers killed, taps, table, mounts and run dir gone) then --boot: every record stopped, autostart VMs running again" {
    local n names=() auto=("${CHAOS_TAG}-b1" "${CHAOS_TAG}-b3")
    for n in 1 2 3 4; do
        names+=("${CHAOS_TAG}-b$n")
        up "${CHAOS_TAG}-b$n" >/dev/null
    done
    as_owner banger-vm set --autostart "${auto[@]}" >/dev/null
    stored "${CHAOS_TAG}-b1" | jq -e '.spec.autostart == true'
    simulate_reboot
    run --separate-stderr reconcile --boot
    if [ "$status" -ne 0 ]; then
        echo "$output" >&2
        echo "$stderr" >&2
        false
    fi
    for n in "${names[@]}"; do
        consistent "$n"
        case " ${auto[*]} " in
            *" $n "*)
                stored "$n" | jq -e '.vm.state == "running" and has("jail")'
                fc_alive "$n"
                ;;
            *)
                stored "$n" | jq -e '.vm.state == "stopped" and .vm.stopped_by == "reconcile" and (has("jail") | not) and (has("net") | not) and .snap.path'
                ! fc_alive "$n"
                ;;
        esac
    done
    finding "${auto[0]}" '.kind == "autostart" and .result == "done"'
    finding "${auto[1]}" '.kind == "autostart" and .result == "done"' 
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
}

@test "reconcile (stand-in firecracker): a VM a step holds is skipped, never acted on; the next run repairs it" {
    local n="${CHAOS_TAG}-held"
    up "$n" >/dev/null
    kill -9 "$(fc_pid "$n")"
    for _ in $(seq 1 100); do fc_alive "$n" || break; sleep 0.05; done
    # A step at work holds the VM's lock.
    hold_lock "$BANGER_STATE_DIR/locks/$n.lock"
    run --separate-stderr reconcile --apply --gc
    assert_success
    finding "$n" '.kind == "busy" and .result == "skipped"' 
    stored "$n" | jq -e 'has("jail")'
    release_lock
    run --separate-stderr reconcile --apply --gc
    assert_success
    stored "$n" | jq -e '(has("jail") | not) and .vm.state == "stopped"'
}

@test "reconcile (stand-in firecracker): one run at a time: a second run says busy and exits 0, or waits with --wait" {
    in_world mkdir -p "$BANGER_STATE_DIR/locks"
    hold_lock "$BANGER_STATE_DIR/locks/.reconcile.lock"
    run --separate-stderr reconcile --apply
    assert_success
    finding - '.kind == "busy" and .result == "skipped"' 
    # shellcheck disable=SC2046  # the prefix is words
    run --separate-stderr timeout 1 $(as_owner_cmd) banger-reconcile --wait
    [ "$status" -eq 124 ]
    release_lock
    run --separate-stderr reconcile --wait
    assert_success
    assert_output ""
}

@test "reconcile (stand-in firecracker): what is not banger's or not banger's to fix is reported, never touched; exit 1" {
    local n="${CHAOS_TAG}-d"
    up "$n" >/dev/null
    as_owner banger down --timeout 1 "$n" >/dev/null
    # A damaged record, and a tap no ledger entry holds.
    in_world sh -c "echo '{garbage' >'$BANGER_STATE_DIR/vms/$n/vm.json'"
    ip -n "$NS_H" tuntap add dev bgrstray mode tap
    local before
    before=$(world_state)
    run --separate-stderr reconcile --apply --gc
    assert_failure 1
    finding "$n" '.kind == "damaged" and .action == "none" and .person' 
    finding - '.kind == "stray" and (.observed | startswith("tap bgrstray"))' 
    [ "$(world_state)" = "$before" ]
    ip -n "$NS_H" link show bgrstray >/dev/null
    ledger_has "$n" disk
    ip -n "$NS_H" link del bgrstray
    run --separate-stderr reconcile --table
    assert_failure 1
    assert_line --regexp '^NAME +KIND +ACTION +RESULT +OBSERVED'
    assert_line --regexp "^$n +damaged +none +needs a person"
}

@test "reconcile (stand-in firecracker): a VM directory holding only the unfinished write of a killed banger-vm new is removed by --gc, and the name is free again" {
    local n="${CHAOS_TAG}-u"
    in_world sh -c "mkdir -p '$BANGER_STATE_DIR/vms/$n' && echo '{\"v\":1' >'$BANGER_STATE_DIR/vms/$n/.vm.json.tmp.999999.1' && chown $OWNER_UID:$OWNER_UID '$BANGER_STATE_DIR/vms' && chown -R $OWNER_UID:$OWNER_UID '$BANGER_STATE_DIR/vms/$n'"
    run --separate-stderr reconcile
    assert_failure 1
    finding "$n" '.kind == "unfinished-new" and .action == "remove-unfinished" and .result == "planned"'
    run --separate-stderr reconcile --apply --gc
    assert_success
    finding "$n" '.kind == "unfinished-new" and .result == "done"'
    in_world test ! -e "$BANGER_STATE_DIR/vms/$n"
    run --separate-stderr reconcile --apply --gc
    assert_success
    assert_output ""
    up "$n" >/dev/null
    as_owner banger down --timeout 1 "$n" >/dev/null
    as_owner banger rm --yes "$n" >/dev/null
    nothing_left "$n"
}

@test "reconcile: usage errors exit 2" {
    run --separate-stderr banger-reconcile --frobnicate
    [ "$status" -eq 2 ]
    [[ "$stderr" == *"usage error"* ]]
    run --separate-stderr banger-reconcile extra
    [ "$status" -eq 2 ]
}
