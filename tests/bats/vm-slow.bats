#!/usr/bin/env bats
# The slow tier: a REAL Linux guest on the REAL Firecracker and jailer, reached over SSH.
# On these hosts a real guest kernel runs interpreted: about 200 s from InstanceStart to
# userspace and 25-60 s per SSH command, so this tier has its own switch and generous
# timeouts. It runs only when BANGER_TEST_FIRECRACKER, BANGER_TEST_JAILER, BANGER_TEST_KERNEL
# (an ELF vmlinux, e.g. ../shared/rig/vmlinux-slim) and BANGER_TEST_ROOTFS (an ext4 root
# filesystem, e.g. from ../shared/rig/make-guest-rootfs.sh) are set; it skips loudly otherwise.
# BANGER_TEST_BOOT_ARGS_EXTRA (default: the rig's boot-args.txt) is the host's extra kernel
# arguments, passed as BANGER_BOOT_ARGS_EXTRA.

bats_require_minimum_version 1.5.0

load test_helper
load net_helper
load pipeline_helper

RIG="${BANGER_TEST_RIG:-$REPO/../shared/rig}"

setup() {
    local v
    for v in BANGER_TEST_FIRECRACKER BANGER_TEST_JAILER BANGER_TEST_KERNEL BANGER_TEST_ROOTFS; do
        [ -n "${!v:-}" ] || skip "SLOW REAL-GUEST TIER SKIPPED: set BANGER_TEST_FIRECRACKER, BANGER_TEST_JAILER, BANGER_TEST_KERNEL and BANGER_TEST_ROOTFS to run it ($v is not set)"
    done
    [ -e /dev/kvm ] || skip "SLOW REAL-GUEST TIER SKIPPED: no /dev/kvm"
    # /var/tmp: a 1 GiB rootfs is copied for the disk.
    pipeline_env /var/tmp
    export BANGER_FIRECRACKER="$BANGER_TEST_FIRECRACKER" BANGER_JAILER="$BANGER_TEST_JAILER"
    local extra="${BANGER_TEST_BOOT_ARGS_EXTRA:-}"
    if [ -z "$extra" ] && [ -f "$RIG/boot-args.txt" ]; then
        # The rig's line minus what the image itself carries.
        extra=$(tr ' ' '\n' <"$RIG/boot-args.txt" | grep -vE '^(console=|reboot=|panic=|pci=|root=|rw$|quiet$)' | tr '\n' ' ')
    fi
    export BANGER_BOOT_ARGS_EXTRA="$extra"
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    banger-image import slow --rootfs "$BANGER_TEST_ROOTFS" --kernel "$BANGER_TEST_KERNEL" \
        --boot-args "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw init=/sbin/fc-init quiet" >/dev/null
    chmod -R a+rX "$BANGER_STATE_DIR"
}

teardown() {
    pipeline_teardown
}

# The guest's network lives in the test's namespace H: reach it from there.
in_ns_h() {
    ip netns exec "$NS_H" "$@"
}

@test "vm (real firecracker, real Linux guest): banger up, then vm exec uname -r over SSH with the pinned host key, then banger down" {
    local t0 t1 i
    t0=$(date +%s%3N)
    run --separate-stderr in_ns_h banger up t1 --image slow --vcpus 1 --mem 512 --timeout 900
    t1=$(date +%s%3N)
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; banger vm console t1 --lines 40 >&2; false; }
    echo "$output" | jq -e '.vm.state == "running" and .vm.ready == "ssh"'
    echo "banger up to SSH ready: $((t1 - t0)) ms (InstanceStart to SSH: $(echo "$output" | jq -r .vm.boot_ms) ms)" >&3
    run banger vm console t1
    assert_output --partial "FC_GUEST_READY"
    # SSH commands take tens of seconds here; retry a few times.
    for i in 1 2 3 4 5; do
        run --separate-stderr in_ns_h banger vm exec t1 -- uname -r
        [ "$status" -eq 0 ] && break
        echo "exec attempt $i: status $status: $stderr" >&3
    done
    assert_success
    assert_output --regexp '^6\.1\.'
    echo "guest kernel: $output" >&3
    # The exit code of the command is passed through.
    run in_ns_h banger vm exec t1 -- sh -c 'exit 3'
    assert_failure 3
    run --separate-stderr banger down t1 --timeout 60
    assert_success
    echo "$output" | jq -e '.vm.state == "stopped"'
}
