#!/usr/bin/env bats
# banger-reconcile with the REAL Firecracker and jailer and the tiny guest of ../shared/rig
# (built here with as + ld; it prints TINY_GUEST_READY and stays up). Runs only when
# BANGER_TEST_FIRECRACKER and BANGER_TEST_JAILER name the binaries; skips loudly otherwise.
# A real helper in a network namespace of the test's own, as in vm-real.bats.

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

up() {
    banger up "$1" --image tiny --wait-console TINY_GUEST_READY --timeout 60 >/dev/null
}

api_state() {
    banger-vm status "$1" | jq -r '(.vm.live.pid | tostring) + "/" + (.vm.live.api_state // "none")'
}

@test "reconcile (real firecracker, real jailer): a running VM survives the helper killed -9 and restarted plus reconcile --apply --gc, with the same Firecracker pid" {
    up r1
    local before
    before=$(api_state r1)
    [[ "$before" == */Running ]]
    kill -9 "$HELPER_PID"
    wait "$HELPER_PID" 2>/dev/null || true
    HELPER_PID=""
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    run --separate-stderr banger-reconcile --apply --gc
    assert_success
    assert_output ""
    run api_state r1
    assert_output "$before"
    echo "# Firecracker pid and state before and after: $before" >&3
    banger down --timeout 1 r1 >/dev/null
}

@test "reconcile (real firecracker, real jailer): a Firecracker killed from outside is marked stopped and released; banger up brings the VM back" {
    up r2
    local pid tap
    pid=$(banger-vm status r2 | jq -r .jail.pid)
    tap=$(banger-vm status r2 | jq -r .net.tap)
    kill -9 "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    run --separate-stderr banger-reconcile --apply
    assert_success
    jq -s -e 'any(.[]; .name == "r2" and .kind == "firecracker-gone" and .result == "done")' <<<"$output"
    banger-vm status r2 | jq -e '.vm.state == "stopped" and (has("jail") | not) and (has("net") | not)'
    run ! ip -n "$NS_H" link show "$tap"
    up r2
    run api_state r2
    [[ "$output" == */Running ]]
    run --separate-stderr banger-reconcile --apply --gc
    assert_success
    assert_output ""
    banger down --timeout 1 r2 >/dev/null
}
