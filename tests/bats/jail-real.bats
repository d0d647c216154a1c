#!/usr/bin/env bats
# banger-jail with the REAL Firecracker and jailer, booting the tiny guest of ../shared/rig
# (tiny-guest.S, built here with as + ld). Runs only when BANGER_TEST_FIRECRACKER and
# BANGER_TEST_JAILER name the binaries; skips loudly otherwise.

load test_helper
load jail_helper

RIG="${BANGER_TEST_RIG:-$REPO/../shared/rig}"

setup() {
    banger_env
    require_root
    if [ -z "${BANGER_TEST_FIRECRACKER:-}" ] || [ -z "${BANGER_TEST_JAILER:-}" ]; then
        skip "REAL FIRECRACKER TIER SKIPPED: set BANGER_TEST_FIRECRACKER and BANGER_TEST_JAILER to run it"
    fi
    [ -e /dev/kvm ] || skip "REAL FIRECRACKER TIER SKIPPED: no /dev/kvm"
    [ -f "$RIG/tiny-guest.S" ] || skip "REAL FIRECRACKER TIER SKIPPED: no $RIG/tiny-guest.S (set BANGER_TEST_RIG)"
    jail_env
    export BANGER_FIRECRACKER="$BANGER_TEST_FIRECRACKER" BANGER_JAILER="$BANGER_TEST_JAILER"
    as "$RIG/tiny-guest.S" -o "$BATS_TEST_TMPDIR/tiny-guest.o"
    ld -static -nostdlib -Ttext=0x1000000 -e _start "$BATS_TEST_TMPDIR/tiny-guest.o" \
        -o "$BANGER_STATE_DIR/images/tiny/vmlinux"
    strip "$BANGER_STATE_DIR/images/tiny/vmlinux"
    ns_start
    jail_start_helper
    VM=$(vm_name)
}

teardown() {
    jail_teardown
}

launch() {
    vm_record "$VM" | in_ns banger-jail launch "$@"
}

api() {
    curl -sS --unix-socket "$SOCK" -X "$1" "http://localhost$2" \
        ${3:+-H 'Content-Type: application/json' -d "$3"} -w '\n%{http_code}\n'
}

@test "jail (real firecracker, real jailer): launch, GET /, boot the tiny guest, read its console, teardown" {
    run launch
    assert_success
    rec=$output
    SOCK=$(echo "$rec" | jq -r .jail.api_sock)
    run api GET /
    assert_success
    assert_line --index 1 200
    assert_output --partial '"state":"Not started"'
    kernel=$(echo "$rec" | jq -r .jail.kernel)
    rootfs=$(echo "$rec" | jq -r .jail.rootfs)
    run api PUT /boot-source "{\"kernel_image_path\":\"$kernel\",\"boot_args\":\"console=ttyS0 banger.test=$VM\"}"
    assert_line 204
    run api PUT /machine-config '{"vcpu_count":1,"mem_size_mib":128}'
    assert_line 204
    run api PUT /drives/rootfs "{\"drive_id\":\"rootfs\",\"path_on_host\":\"$rootfs\",\"is_root_device\":true,\"is_read_only\":false}"
    assert_line 204
    run api PUT /actions '{"action_type":"InstanceStart"}'
    assert_line 204
    console=$(echo "$rec" | jq -r .jail.console)
    for _ in $(seq 1 200); do grep -q TINY_GUEST_READY "$console" 2>/dev/null && break; sleep 0.05; done
    run cat "$console"
    assert_output --partial "TINY_GUEST_READY cmdline="
    assert_output --partial "banger.test=$VM"
    as_uid "$OWNER_UID" test -r "$console"
    run api GET /
    assert_output --partial '"state":"Running"'
    pid=$(echo "$rec" | jq -r .jail.pid)
    [ "$(stat -c %u /proc/"$pid")" = "$OWNER_UID" ]
    run nsenter -t "$NS_PID" -m -- banger-jail teardown "$VM"
    assert_success
    run alive "$pid"
    assert_failure
    grep -q TINY_GUEST_READY "$BANGER_STATE_DIR/vms/$VM/console.log"
    assert_nothing_left "$VM"
}

@test "jail (real firecracker, real jailer): teardown after Firecracker was killed from outside" {
    run launch
    assert_success
    pid=$(echo "$output" | jq -r .jail.pid)
    kill -9 "$pid"
    run nsenter -t "$NS_PID" -m -- banger-jail teardown "$VM"
    assert_success
    assert_nothing_left "$VM"
}
