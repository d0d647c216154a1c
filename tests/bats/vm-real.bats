#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
# The VM's whole life on the REAL Firecracker and jailer, with the tiny guest of
# ../shared/rig (tiny-guest.S, built here with as + ld; it prints TINY_GUEST_READY and stays
# up). Runs only when BANGER_TEST_FIRECRACKER and BANGER_TEST_JAILER name the binaries; skips
# loudly otherwise. Like pipeline.bats: a real helper inside a network namespace of the
# test's own; teardown checks the host's links and ruleset did not change.

bats_require_minimum_version 1.5.0

load test_helper
load net_helper
load pipeline_helper

RIG="${BANGER_TEST_RIG:-$REPO/../shared/rig}"

setup() {
    if [ -z "${BANGER_TEST_FIRECRACKER:-}" ] || [ -z "${BANGER_TEST_JAILER:-}" ]; then
        skip "REAL FIRECRACKER TIER SKIPPED: set BANGER_TEST_FIRECRACKER and BANGER_TEST_JAILER to run it"
    fi
    [ -e /dev/kvm ] || skip "REAL FIRECRACKER TIER SKIPPED: no /dev/kvm"
    [ -f "$RIG/tiny-guest.S" ] || skip "REAL FIRECRACKER TIER SKIPPED: no $RIG/tiny-guest.S (set BANGER_TEST_RIG)"
    pipeline_env
    export BANGER_FIRECRACKER="$BANGER_TEST_FIRECRACKER" BANGER_JAILER="$BANGER_TEST_JAILER"
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    as "$RIG/tiny-guest.S" -o "$P_TMP/tiny.o"
    ld -static -nostdlib -Ttext=0x1000000 -e _start "$P_TMP/tiny.o" -o "$P_TMP/vmlinux"
    strip "$P_TMP/vmlinux"
    mkdir -p "$P_TMP/tree/etc"
    echo tiny >"$P_TMP/tree/etc/hostname"
    mkfs.ext4 -q -F -d "$P_TMP/tree" "$P_TMP/rootfs.ext4" 8M >/dev/null 2>&1
    banger-image import tiny --rootfs "$P_TMP/rootfs.ext4" --kernel "$P_TMP/vmlinux" \
        --boot-args "console=ttyS0 reboot=k panic=1 pci=off" >/dev/null
    chmod -R a+rX "$BANGER_STATE_DIR"
}

teardown() {
    pipeline_teardown
}

state_of() {
    banger-vm status "$1" | jq -r '.vm.state + "/" + (.vm.live.api_state // "none")'
}

@test "vm (real firecracker, real jailer): up, status, pause, resume, snapshot, restore, stop, down with the tiny guest" {
    run --separate-stderr banger up t1 --image tiny --wait-console TINY_GUEST_READY --timeout 60
    assert_success
    echo "$output" | jq -e '.vm.state == "running" and .vm.ready == "console" and .jail.launcher == "jailer"'
    echo "boot: $(echo "$output" | jq -r .vm.boot_ms) ms from InstanceStart to TINY_GUEST_READY" >&3
    run banger vm console t1
    assert_output --partial "TINY_GUEST_READY cmdline="
    assert_output --partial "ip="
    run state_of t1
    assert_output "running/Running"
    # Firecracker made the vsock socket in the chroot; it is the owner's alone, and the run
    # dir's link reaches it. The tiny guest has no vsock driver: exec through the agent fails
    # clearly (Firecracker holds the connection request; banger gives up after 5 s).
    local sock
    sock=$(banger-vm status t1 | jq -r .jail.vsock_sock)
    [ -S "$sock" ] && [ "$(stat -L -c '%u %a' "$sock")" = "$OWNER_UID 600" ]
    run --separate-stderr banger vm exec --via agent t1 -- true
    assert_failure 1
    [[ "$stderr" == *"the guest did not take the connection"* ]]

    banger-vm pause t1 >/dev/null
    run state_of t1
    assert_output "paused/Paused"
    banger-vm resume t1 >/dev/null
    run state_of t1
    assert_output "running/Running"

    run --separate-stderr banger-vm snapshot t1 "$P_TMP/snap"
    assert_success
    [ -s "$P_TMP/snap/vmstate" ] && [ -s "$P_TMP/snap/memory" ]
    run state_of t1
    assert_output "running/Running"

    # A fresh Firecracker for the same disk and network, then the snapshot into it.
    banger-vm kill t1 | banger-jail teardown | banger-jail launch >/dev/null
    run state_of t1
    assert_output "launched/Not started"
    run --separate-stderr banger-vm restore t1 "$P_TMP/snap"
    assert_success
    run state_of t1
    assert_output "running/Running"

    # The tiny guest ignores Ctrl-Alt-Del (it halts with interrupts off): stop kills after the timeout.
    run --separate-stderr banger down t1 --timeout 2
    assert_success
    echo "$output" | jq -e '.vm.state == "stopped" and .jail == null and .net == null and .snap.path != null'
    run banger rm t1 --yes
    assert_success
    [ "$(ledger_jq '[.entries[] | select(.vm == "t1")] | length')" -eq 0 ]
}

@test "vm (real firecracker, real jailer): Firecracker's own fault_message reaches the user" {
    banger up t1 --image tiny --wait-console TINY_GUEST_READY --timeout 60 >/dev/null 2>&1
    run --separate-stderr banger-vm restore t1 "$P_TMP/nowhere"
    assert_failure
    mkdir -p "$P_TMP/bad" && echo x >"$P_TMP/bad/vmstate" && echo x >"$P_TMP/bad/memory"
    run --separate-stderr banger-vm restore t1 "$P_TMP/bad"
    assert_failure 1
    [[ "$stderr" == *"already runs a guest"* ]]
    # Configuring a started VM: Firecracker refuses, and says why.
    local sock
    sock=$(banger-vm status t1 | jq -r .jail.api_sock)
    run curl -sS --unix-socket "$sock" -X PUT http://localhost/machine-config \
        -H 'Content-Type: application/json' -d '{"vcpu_count": 1, "mem_size_mib": 128}'
    assert_output --partial "fault_message"
    banger down t1 --timeout 1 >/dev/null 2>&1
}

@test "vm (real firecracker, real jailer): a guest that exits is seen as stopped" {
    banger-image rm tiny >/dev/null
    banger-image import tiny --rootfs "$P_TMP/rootfs.ext4" --kernel "$P_TMP/vmlinux" \
        --boot-args "console=ttyS0 reboot=k panic=1 pci=off tiny.exit" >/dev/null
    run --separate-stderr banger up t2 --image tiny --wait-console TINY_GUEST_EXIT --timeout 60
    for _ in $(seq 1 100); do
        [ "$(state_of t2)" = "stopped/none" ] && break
        sleep 0.1
    done
    run state_of t2
    assert_output "stopped/none"
    run --separate-stderr banger down t2
    assert_success
}
