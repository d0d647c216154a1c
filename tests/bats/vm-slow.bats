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

# The static agent for the guest: BANGER_TEST_AGENT, else built here for the musl target
# (skips loudly when it cannot be).
static_agent() {
    if [ -n "${BANGER_TEST_AGENT:-}" ]; then
        echo "$BANGER_TEST_AGENT"
        return
    fi
    (cd "$REPO" && cargo build -q --profile agent --target x86_64-unknown-linux-musl -p banger-agent) >&2 ||
        return 1
    echo "$REPO/target/x86_64-unknown-linux-musl/agent/banger-agent"
}

# now_ms: milliseconds since the epoch.
now_ms() {
    date +%s%3N
}

@test "vm (real firecracker, real Linux guest): the agent written into the disk starts as init=, banger up waits on it; exec, stdin, exit codes and cp through it; measured against SSH" {
    local agent t0 t1 i out pid
    agent=$(static_agent) || skip "SLOW REAL-GUEST TIER: AGENT TEST SKIPPED LOUDLY: cannot build the static agent (rustup target add x86_64-unknown-linux-musl, or set BANGER_TEST_AGENT)"
    export BANGER_AGENT="$agent"
    stop_helper
    rm -f "$BANGER_HELPER_SOCKET"
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    echo "agent binary: $(stat -c %s "$agent") bytes ($agent)" >&3
    t0=$(now_ms)
    run --separate-stderr in_ns_h banger up t1 --image slow --vcpus 1 --mem 512 --timeout 900
    t1=$(now_ms)
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; banger vm console t1 --lines 40 >&2; false; }
    echo "$output" | jq -e '.snap.agent == "init-hook" and .vm.ready == "agent" and (.vm.agent.kernel | startswith("6.1."))'
    echo "banger up to agent ready: $((t1 - t0)) ms (InstanceStart to the agent's hello: $(echo "$output" | jq -r .vm.boot_ms) ms)" >&3
    # When the agent answered, in the guest's uptime (FC_GUEST_READY, printed by fc-init once
    # sshd runs, is in the same clock).
    echo "guest uptime when the agent first answered: $(banger-vm status t1 | jq -r .vm.live.agent.uptime_s) s (now)" >&3
    # PID 1 is still the image's init: the agent forked off and exec'd fc-init.
    run banger vm console t1
    assert_output --partial "banger-agent"
    run --separate-stderr banger vm exec t1 -- cat /proc/1/comm
    assert_success
    assert_output "fc-init"
    # The agent idle, before any transfer: its resident memory.
    pid=$(banger-vm status t1 | jq -r .vm.live.agent.pid)
    out=$(banger vm exec t1 -- /bin/busybox grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status" | tr -s ' \t\n' ' ')
    echo "agent in the guest, idle (pid $pid): $out" >&3
    # The agent's own cost: a static program that does nothing (no dynamic loading, which is
    # what makes a program slow to start in this guest).
    for i in 1 2 3; do
        t0=$(now_ms)
        run --separate-stderr banger vm exec t1 -- /bin/busybox true
        t1=$(now_ms)
        assert_success
        echo "exec /bin/busybox true through the agent (#$i): $((t1 - t0)) ms" >&3
    done
    # exec through the agent: the release, exit codes, stdin.
    for i in 1 2 3; do
        t0=$(now_ms)
        run --separate-stderr banger vm exec t1 -- uname -r
        t1=$(now_ms)
        assert_success
        assert_output --regexp '^6\.1\.'
        echo "exec uname -r through the agent (#$i): $((t1 - t0)) ms" >&3
    done
    run banger vm exec t1 -- sh -c 'exit 3'
    assert_failure 3
    run --separate-stderr bash -c 'echo hi | banger vm exec t1 -- cat'
    assert_success
    assert_output "hi"
    # cp: 10 MiB in and out, the same sha256.
    head -c $((10 * 1024 * 1024)) /dev/urandom >"$BATS_TEST_TMPDIR/blob"
    t0=$(now_ms)
    run --separate-stderr banger vm cp "$BATS_TEST_TMPDIR/blob" t1:/root/blob
    t1=$(now_ms)
    assert_success
    echo "cp 10 MiB into the guest: $((t1 - t0)) ms" >&3
    t0=$(now_ms)
    run --separate-stderr banger vm cp t1:/root/blob "$BATS_TEST_TMPDIR/back"
    t1=$(now_ms)
    assert_success
    echo "cp 10 MiB out of the guest: $((t1 - t0)) ms" >&3
    [ "$(sha256sum <"$BATS_TEST_TMPDIR/blob")" = "$(sha256sum <"$BATS_TEST_TMPDIR/back")" ]
    run banger vm exec t1 -- sha256sum /root/blob
    assert_output --partial "$(sha256sum <"$BATS_TEST_TMPDIR/blob" | cut -d' ' -f1)"
    # Its memory after the transfers.
    run banger vm exec t1 -- /bin/busybox grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status"
    assert_success
    echo "agent in the guest after the copies: $(echo "$output" | tr -s ' \t\n' ' ')" >&3
    echo "load average during the test: $(cut -d' ' -f1-3 /proc/loadavg)" >&3
    # The same command over SSH, once sshd is up (the guest's fc-init starts it later).
    run --separate-stderr in_ns_h banger vm wait t1 --wait ssh --timeout 600
    assert_success
    echo "fc-init's ready line (guest uptime once sshd runs): $(banger vm console t1 | grep -o 'FC_GUEST_READY [0-9.]*' | head -1)" >&3
    for i in 1 2 3 4 5; do
        t0=$(now_ms)
        run --separate-stderr in_ns_h banger vm exec --via ssh t1 -- uname -r
        t1=$(now_ms)
        [ "$status" -eq 0 ] && break
        echo "ssh attempt $i: status $status: $stderr" >&3
    done
    assert_success
    assert_output --regexp '^6\.1\.'
    echo "exec uname -r over SSH: $((t1 - t0)) ms" >&3
    run --separate-stderr banger down t1 --timeout 60
    assert_success
}

# boot_id NAME: the guest's boot_id, read over SSH (tens of seconds a command here: retried).
boot_id_over_ssh() {
    local i out
    for i in 1 2 3 4 5; do
        out=$(in_ns_h banger vm exec --via ssh "$1" -- cat /proc/sys/kernel/random/boot_id 2>/dev/null) &&
            [ -n "$out" ] && { echo "$out"; return 0; }
        echo "boot_id attempt $i failed" >&3
    done
    return 1
}

@test "reconcile (real firecracker, real Linux guest): the guest keeps its boot_id over SSH and its Firecracker pid when the helper is killed -9, restarted and reconcile --apply --gc runs" {
    run --separate-stderr in_ns_h banger up t2 --image slow --vcpus 1 --mem 512 --wait ssh --timeout 900
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; banger vm console t2 --lines 40 >&2; false; }
    local pid before after
    pid=$(banger-vm status t2 | jq -r .jail.pid)
    before=$(boot_id_over_ssh t2)
    [[ "$before" =~ ^[0-9a-f-]{36}$ ]]
    kill -9 "$HELPER_PID"
    wait "$HELPER_PID" 2>/dev/null || true
    HELPER_PID=""
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    run --separate-stderr banger-reconcile --apply --gc
    assert_success
    assert_output ""
    after=$(boot_id_over_ssh t2)
    [ "$after" = "$before" ]
    [ "$(banger-vm status t2 | jq -r .vm.live.pid)" = "$pid" ]
    echo "# boot_id before and after the helper's restart and reconcile: $before; Firecracker pid $pid" >&3
    run --separate-stderr banger down t2 --timeout 60
    assert_success
}
