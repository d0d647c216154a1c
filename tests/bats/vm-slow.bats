#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
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
    local f pid
    if [ -n "${XFS_MNT:-}" ]; then
        # The Firecrackers whose jails are on the XFS this test mounted, then the mount.
        for f in "$XFS_MNT"/jail/*/*/root/*.pid; do
            [ -f "$f" ] || continue
            pid=$(tr -d '[:space:]' <"$f")
            case "$(cat /proc/"$pid"/comm 2>/dev/null)" in firecracker*) kill -9 "$pid" 2>/dev/null ;; esac
        done
        sleep 0.5
        umount -l "$XFS_MNT" 2>/dev/null || true
    fi
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
    # The exit code of the command is passed through (255 is ssh's own failure: this
    # interpreted guest's sshd now and then refuses a good key, as the first exec above may
    # see too: tried again).
    for i in 1 2 3 4 5; do
        run in_ns_h banger vm exec t1 -- sh -c 'exit 3'
        [ "$status" -ne 255 ] && break
        echo "exec attempt $i: status $status: $output" >&3
    done
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

# fc_pid NAME: the VM's Firecracker pid from its record.
fc_pid() {
    banger-vm status "$1" | jq -r .jail.pid
}

# mem_of PID: "RSS PSS" in KiB of a process.
mem_of() {
    local rss pss
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup")
    echo "$rss $pss"
}

@test "warm (real firecracker, real Linux guest): banger-image warm once, then five banger ups from the snapshot, each to 'vm exec -- true' through the agent; five identities; memory against a cold guest" {
    local agent t0 t1 t2 i n out rss pss trss=0 tpss=0
    agent=$(static_agent) || skip "SLOW REAL-GUEST TIER: WARM TEST SKIPPED LOUDLY: cannot build the static agent (rustup target add x86_64-unknown-linux-musl, or set BANGER_TEST_AGENT)"
    export BANGER_AGENT="$agent"
    stop_helper
    rm -f "$BANGER_HELPER_SOCKET"
    # State and jails on a sparse loop-mounted XFS: the clones' disks are reflinks of the warm
    # disk (O(1), as on a host whose state dir is XFS or btrfs), and the memory file is
    # hard-linked into each jail.
    XFS_MNT="$P_TMP/xfs"
    truncate -s 8G "$P_TMP/xfs.img"
    mkfs.xfs -q -m reflink=1 "$P_TMP/xfs.img"
    mkdir -p "$XFS_MNT"
    mount -o loop "$P_TMP/xfs.img" "$XFS_MNT"
    chmod 0755 "$XFS_MNT"
    export BANGER_STATE_DIR="$XFS_MNT/state" BANGER_JAIL_DIR="$XFS_MNT/jail"
    mkdir -p "$BANGER_STATE_DIR"
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    banger-image import slow --rootfs "$BANGER_TEST_ROOTFS" --kernel "$BANGER_TEST_KERNEL" \
        --boot-args "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw init=/sbin/fc-init quiet" >/dev/null
    chmod -R a+rX "$BANGER_STATE_DIR"
    # Warm once, when sshd runs too (fc-init prints its ready line then), so the clones' sshd
    # is up and reads the host keys the agent gives them.
    t0=$(now_ms)
    run --separate-stderr in_ns_h banger-image warm slow --wait console:FC_GUEST_READY --timeout 1200 --json
    t1=$(now_ms)
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
    echo "$output" | jq -e '.warm.state == "fresh" and .warm.firecracker_version == "1.16.1"'
    echo "banger-image warm slow: $((t1 - t0)) ms (its cold boot to the guest being ready: $(echo "$output" | jq -r .warm.boot_ms) ms; artifacts $(echo "$output" | jq -r '.warm.bytes / 1048576 | floor') MiB)" >&3
    # Five VMs from the snapshot, each to a command through the agent. Each guest's kernel runs
    # interpreted and shares the 2 cores with the next ones (its sshd re-executes after the
    # new host keys): the next starts once the load settled a little.
    for i in 1 2 3 4 5; do
        [ "$i" -eq 1 ] || sleep 20
        echo "load before w$i: $(cut -d' ' -f1 /proc/loadavg)" >&3
        t0=$(now_ms)
        run --separate-stderr in_ns_h banger up "w$i" --image slow --timeout 900 --json
        t1=$(now_ms)
        [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; banger vm console "w$i" --lines 40 >&2; false; }
        echo "$output" | jq -e '.vm.start == "warm" and .vm.ready == "agent" and .snap.method == "reflink"'
        out=$output
        run --separate-stderr banger vm exec "w$i" -- true
        t2=$(now_ms)
        assert_success
        echo "warm w$i: banger up $((t1 - t0)) ms (snapshot/load $(jq -r .vm.warm.load_ms <<<"$out") ms, identity $(jq -r .vm.warm.identity_ms <<<"$out") ms $(jq -c .vm.warm.identity_parts_ms <<<"$out"), boot_ms $(jq -r .vm.boot_ms <<<"$out")), then exec true $((t2 - t1)) ms: up to exec done $((t2 - t0)) ms" >&3
    done
    # Five identities: MAC, address, host key, hostname, and the RNG.
    local macs=() addrs=() keys=() rnd=()
    for i in 1 2 3 4 5; do
        run --separate-stderr banger vm exec "w$i" -- cat /sys/class/net/eth0/address
        assert_success
        assert_output "$(banger-vm status "w$i" | jq -r .net.mac)"
        macs+=("$output")
        run --separate-stderr banger vm exec "w$i" -- /bin/busybox ip -4 -o addr show dev eth0
        assert_success
        assert_output --partial "inet $(banger-vm status "w$i" | jq -r .net.ip)/"
        addrs+=("$(echo "$output" | grep -o 'inet [0-9./]*')")
        run --separate-stderr banger vm exec "w$i" -- cat /etc/ssh/ssh_host_ed25519_key.pub
        assert_success
        keys+=("$(echo "$output" | cut -d' ' -f2)")
        [ "$(echo "$output" | cut -d' ' -f2)" = "$(banger-vm status "w$i" | jq -r .snap.host_keys.ed25519 | cut -d' ' -f2)" ]
        run --separate-stderr banger vm exec "w$i" -- cat /proc/sys/kernel/hostname
        assert_output "w$i"
        run --separate-stderr banger vm exec "w$i" -- /bin/busybox od -An -tx1 -N32 /dev/urandom
        assert_success
        rnd+=("$(echo "$output" | tr -d ' \n')")
    done
    for n in macs addrs keys rnd; do
        local -n arr=$n
        [ "$(printf '%s\n' "${arr[@]}" | sort -u | wc -l)" -eq 5 ] || { echo "$n not distinct: ${arr[*]}" >&2; false; }
        echo "five distinct $n: ${arr[*]}" >&3
    done
    # A file written in one is in no other.
    run banger vm exec w1 -- sh -c 'echo only-w1 > /root/only-w1 && sync'
    assert_success
    for i in 2 3 4 5; do
        run banger vm exec "w$i" -- test -e /root/only-w1
        assert_failure 1
    done
    # SSH to each with its pinned host key (sshd here answers in tens of seconds: retried).
    for i in 1 2 3 4 5; do
        for n in 1 2 3; do
            run --separate-stderr in_ns_h banger vm exec --via ssh "w$i" -- cat /proc/sys/kernel/hostname
            [ "$status" -eq 0 ] && break
        done
        assert_success
        assert_output "w$i"
    done
    # Memory: the five clones' Firecrackers (RSS, and PSS, which splits the shared memory
    # file's page cache between them).
    for i in 1 2 3 4 5; do
        read -r rss pss < <(mem_of "$(fc_pid "w$i")")
        trss=$((trss + rss))
        tpss=$((tpss + pss))
        echo "warm w$i firecracker: RSS $((rss / 1024)) MiB, PSS $((pss / 1024)) MiB" >&3
    done
    echo "five warm clones: RSS $((trss / 1024)) MiB in all, PSS $((tpss / 1024)) MiB in all" >&3
    for i in 1 2 3 4 5; do
        banger rm "w$i" --yes >/dev/null 2>&1
    done
    # One cold guest, the same machine, to the same exec (five of them would take the better
    # part of an hour here): its time and its memory once ready.
    t0=$(now_ms)
    run --separate-stderr in_ns_h banger up c1 --image slow --cold --timeout 1200 --json
    t1=$(now_ms)
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
    echo "$output" | jq -e '.vm.start == "cold"'
    run --separate-stderr banger vm exec c1 -- true
    t2=$(now_ms)
    assert_success
    read -r rss pss < <(mem_of "$(fc_pid c1)")
    echo "cold c1: banger up $((t1 - t0)) ms, then exec true $((t2 - t1)) ms: up to exec done $((t2 - t0)) ms; firecracker RSS $((rss / 1024)) MiB, PSS $((pss / 1024)) MiB (five such: about $((5 * rss / 1024)) MiB)" >&3
    echo "load average during the test: $(cut -d' ' -f1-3 /proc/loadavg)" >&3
    banger rm c1 --yes >/dev/null 2>&1
}
