#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
# The whole pipeline as a user runs it: `banger up` / `banger down` / `banger rm`, with the
# Firecracker and jailer TEST STAND-INS (tests/standin, not Firecracker), a real helper inside
# a network namespace of the test's own (bridge, tap and nft table live there), real disks,
# real chroots. Teardown checks that the host's links and ruleset did not change.

bats_require_minimum_version 1.5.0

load test_helper
load net_helper
load pipeline_helper
load snap_helper

setup() {
    pipeline_env
    export BANGER_FIRECRACKER="$STANDIN_FIRECRACKER" BANGER_JAILER="$STANDIN_JAILER"
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    make_image default
    chmod -R a+rX "$BANGER_STATE_DIR"
}

teardown() {
    pipeline_teardown
}

rec() {
    banger-vm status "$1"
}

requests_of() {
    cat "$(rec "$1" | jq -r .jail.chroot)/run/standin-requests.jsonl"
}

ledger_of() {
    ledger_jq -c --arg n "$1" '[.entries[] | select(.vm == $n) | .kind] | sort'
}

@test "pipeline (stand-in firecracker): banger up creates, launches and boots a VM; the API got the record's facts" {
    run --separate-stderr banger up t1 --vcpus 2 --mem 256 --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    [[ "$stderr" == *"banger up: t1 ready in"* ]]
    echo "$output" | jq -e '.vm.state == "running" and .vm.ready == "console" and (.vm.boot_ms | type) == "number"'
    echo "$output" | jq -e '.spec.image == "default" and .snap.method != null and .net.ip != null and .jail.launcher == "jailer"'
    run rec t1
    echo "$output" | jq -e '.vm.live.api_state == "Running" and .vm.live.pid == .jail.pid'
    local r
    r=$(rec t1)
    run requests_of t1
    jq -s -e '[.[] | select(.method == "PUT") | .path] | . as $p | ($p | index("/actions")) == ($p | length - 1)' <<<"$output"
    jq -s -e --argjson r "$r" 'map(select(.path == "/network-interfaces/eth0"))[0].body == {"iface_id": "eth0", "host_dev_name": $r.net.tap, "guest_mac": $r.net.mac}' <<<"$output"
    jq -s -e --argjson r "$r" 'map(select(.path == "/drives/rootfs"))[0].body == {"drive_id": "rootfs", "path_on_host": $r.jail.rootfs, "is_root_device": true, "is_read_only": false}' <<<"$output"
    jq -s -e 'map(select(.path == "/machine-config"))[0].body == {"vcpu_count": 2, "mem_size_mib": 256}' <<<"$output"
    jq -s -e --argjson r "$r" 'map(select(.path == "/boot-source"))[0].body.boot_args | contains("ip=" + $r.net.ip + "::" + $r.net.gateway + ":255.255.255.0:t1:eth0:off")' <<<"$output"
    # The console reached the user through the jail.
    run banger vm console t1
    assert_output --partial "STANDIN_GUEST_READY"
    # The privileged resources are all in the ledger.
    run ledger_of t1
    assert_output --partial '"disk"'
    assert_output --partial '"tap"'
    assert_output --partial '"jail"'
}

@test "pipeline (stand-in firecracker): banger up --timing prints one line per step with the helper's phases" {
    run --separate-stderr banger up t1 --timing --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    local b
    for b in banger-vm banger-snap banger-net banger-jail; do
        grep -E "^$b: timing: t1: [0-9.]+ ms at \+[0-9.]+ ms: " <<<"$stderr"
    done
    # The helper's own phases come back nested under its op.
    grep -E "^banger-snap: timing: t1: .*helper snap.create [0-9.]+ \(.*customize [0-9.]+ \(.*slots [0-9.]+" <<<"$stderr"
    grep -E "^banger-vm: timing: t1: .*InstanceStart [0-9.]+.*wait [0-9.]+" <<<"$stderr"
    # Without it, nothing of the kind.
    banger down t1 --timeout 2 >/dev/null 2>&1
    run --separate-stderr banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    [[ "$stderr" != *"timing:"* ]]
}

@test "pipeline (stand-in firecracker): banger up writes the guest's identity into its disk in one pass, and nothing again after down" {
    run --separate-stderr banger up t1 --timing --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    # The image was prepared at import: the identity goes into its slots, no debugfs.
    [ "$(grep -o 'slots [0-9]' <<<"$stderr" | wc -l)" -eq 1 ]
    [[ "$stderr" != *debugfs* ]]
    local disk ip
    disk=$(rec t1 | jq -r .snap.path)
    ip=$(rec t1 | jq -r .net.ip)
    [ "$(guest_cat "$disk" /etc/hostname)" = t1 ]
    guest_cat "$disk" /etc/banger/net.env | grep -Fx "BANGER_IP=$ip"
    guest_cat "$disk" /etc/ssh/ssh_host_ed25519_key.pub | grep -F "$(rec t1 | jq -r .snap.host_keys.ed25519)"
    banger down t1 --timeout 2 >/dev/null 2>&1
    run --separate-stderr banger up t1 --timing --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    [[ "$stderr" != *debugfs* ]]
    [ "$(rec t1 | jq -r .net.ip)" = "$ip" ]
    banger down t1 --timeout 2 >/dev/null 2>&1
    # Its address taken meanwhile: the new network is written, in one pass again.
    banger-vm new t9 --image default | banger-net up >/dev/null
    run --separate-stderr banger up t1 --timing --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    local ip2
    ip2=$(rec t1 | jq -r .net.ip)
    [ "$ip2" != "$ip" ]
    [ "$(grep -o 'debugfs [0-9]' <<<"$stderr" | wc -l)" -eq 1 ]
    banger down t1 --timeout 2 >/dev/null 2>&1
    guest_cat "$disk" /etc/banger/net.env | grep -Fx "BANGER_IP=$ip2"
    banger-net down t9 >/dev/null
}

@test "pipeline (stand-in firecracker): banger down keeps the disk; banger up starts it again; banger rm removes everything" {
    banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20 >/dev/null 2>&1
    local disk tap chroot
    disk=$(rec t1 | jq -r .snap.path)
    tap=$(rec t1 | jq -r .net.tap)
    chroot=$(rec t1 | jq -r .jail.chroot)
    run --separate-stderr banger down t1 --timeout 2
    assert_success
    echo "$output" | jq -e '.vm.state == "stopped" and .jail == null and .net == null and .snap.path != null'
    [ -f "$disk" ]
    [ ! -e "$chroot" ]
    run ip -n "$NS_H" link show "$tap"
    assert_failure
    run ledger_of t1
    assert_output '["disk"]'

    run --separate-stderr banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    echo "$output" | jq -e --arg d "$disk" '.vm.state == "running" and .snap.path == $d'

    run --separate-stderr banger rm t1
    assert_failure 2
    [[ "$stderr" == *"pass --yes"* ]]
    run --separate-stderr banger rm t1 --yes
    assert_success
    [ ! -e "$disk" ]
    run banger vm status t1
    assert_failure
    run ledger_of t1
    assert_output '[]'
    [ -z "$(ls "$BANGER_JAIL_DIR"/firecracker 2>/dev/null)" ]
}

@test "pipeline (stand-in firecracker): banger up on a running VM changes nothing" {
    banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20 >/dev/null 2>&1
    local before
    before=$(rec t1 | jq -c '{ip: .net.ip, tap: .net.tap, pid: .jail.pid, disk: .snap.path}')
    run --separate-stderr banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    [ "$(rec t1 | jq -c '{ip: .net.ip, tap: .net.tap, pid: .jail.pid, disk: .snap.path}')" = "$before" ]
    [ "$(requests_of t1 | jq -s '[.[] | select(.path == "/actions")] | length')" -eq 1 ]
}

@test "pipeline (stand-in firecracker): a step that fails names itself, the error flows through, nothing made before is lost" {
    banger-vm new t2 --image default | banger-snap create | banger-net up >"$BATS_TEST_TMPDIR/rec.json"
    # Break the jail step: the image's kernel is gone.
    rm "$BANGER_STATE_DIR/images/default/vmlinux"
    run --separate-stderr bash -c "set -o pipefail; banger-jail launch <'$BATS_TEST_TMPDIR/rec.json' | banger-vm start --no-wait"
    assert_failure 1
    echo "$output" | jq -e '.error.step == "launch" or .error.step == "jail"'
    echo "$output" | jq -e '.net.ip != null and .snap.path != null'
    [[ "$stderr" == *"banger-jail: error: t2"* ]]
    # The store and the ledger still hold the disk and the network made before.
    rec t2 | jq -e '.snap.path != null and .net.tap != null and .jail == null'
    run ledger_of t2
    assert_output --partial '"disk"'
    assert_output --partial '"tap"'
    refute_output --partial '"jail"'
    banger-vm rm --force t2
    run ledger_of t2
    assert_output '[]'
}

@test "banger up/down/rm: usage errors exit 2 with a hint" {
    run banger up
    assert_failure 2
    run banger up t1 --frob
    assert_failure 2
    run banger down
    assert_failure 2
    run banger rm
    assert_failure 2
    run banger up --help
    assert_success
    assert_output --partial "banger-vm new NAME --exists-ok ... | banger-net up | banger-snap create"
}

@test "pipeline (stand-in firecracker): the disk of a launched VM is never written under it" {
    banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20 >/dev/null 2>&1
    run helper_call '{"op":"snap.customize","args":{"vm":"t1","hostname":"evil"}}'
    assert_output --partial '"code":"conflict"'
    assert_output --partial "t1 is launched"
    # banger-net up on the running VM (nothing changed) does not try to write the disk.
    run --separate-stderr banger-net up t1
    assert_success
}

@test "pipeline (stand-in firecracker): the console log is bounded; the keeper exits with Firecracker" {
    # The keeper is the owner's step's business (banger-jail), sized by its configuration.
    BANGER_CONSOLE_MAX_BYTES=4096 banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20 >/dev/null 2>&1
    local chroot keeper
    chroot=$(rec t1 | jq -r .jail.chroot)
    keeper=$(rec t1 | jq -r .jail.keeper_pid)
    [ "$(cat /proc/"$keeper"/comm)" = banger-console- ]
    [ "$(stat -c %u /proc/"$keeper")" = "$OWNER_UID" ]
    # 40 KiB of guest output through the FIFO Firecracker writes to.
    head -c 30000 /dev/urandom | base64 -w 100 >"$chroot/console.fifo"
    for _ in $(seq 1 100); do [ -f "$chroot/console.log.1" ] && break; sleep 0.05; done
    sleep 0.3
    [ "$(stat -c %s "$chroot/console.log")" -le 4096 ]
    [ "$(stat -c %s "$chroot/console.log.1")" -eq 4096 ]
    run banger vm console t1 --lines 1
    assert_output --regexp '^[A-Za-z0-9+/=]+$'
    banger down t1 --timeout 1 >/dev/null 2>&1
    for _ in $(seq 1 60); do [ -d /proc/"$keeper" ] || break; sleep 0.05; done
    run test -d /proc/"$keeper"
    assert_failure
}

@test "pipeline (stand-in firecracker): a firecracker that is a symlink to a versioned release file launches and is found" {
    mkdir -p "$P_TMP/fcbin"
    ln -f "$STANDIN_DIR/firecracker" "$P_TMP/fcbin/firecracker-v1.16.1-x86_64"
    ln -s firecracker-v1.16.1-x86_64 "$P_TMP/fcbin/firecracker"
    stop_helper
    BANGER_FIRECRACKER="$P_TMP/fcbin/firecracker" start_helper_in "$NS_H" --owner "$OWNER_UID"
    run --separate-stderr banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    echo "$output" | jq -e --arg c "$BANGER_JAIL_DIR/firecracker-v1.16.1-x86_64/t1/root" '.jail.chroot == $c'
    run banger-vm status t1
    echo "$output" | jq -e '.vm.state == "running" and .vm.live.pid == .jail.pid'
    [ "$(cat /proc/"$(echo "$output" | jq -r .jail.pid)"/comm)" = "firecracker-v1." ]
    run --separate-stderr banger down t1 --timeout 1
    assert_success
    [ ! -e "$BANGER_JAIL_DIR/firecracker-v1.16.1-x86_64/t1" ]
}

# nothing_made NAME: no record, disk, tap, bridge, ledger entry or jail for NAME, and IPv4
# forwarding off in the test's host namespace (as it started).
nothing_made() {
    [ ! -e "$BANGER_STATE_DIR/vms/$1" ]
    [ "$(ledger_count)" -eq 0 ]
    run ip -n "$NS_H" link show banger0
    assert_failure
    [ "$(in_h cat /proc/sys/net/ipv4/ip_forward)" = 0 ]
    # No jail (the launcher's group directory may stay, empty).
    [ -z "$(ls "$BANGER_JAIL_DIR"/* 2>/dev/null)" ]
}

@test "banger up (stand-in firecracker): no Firecracker for the helper fails before any step changes the host, with the fix; BANGER_FIRECRACKER in the caller's environment does not count (issue 13, items 2 and 4)" {
    stop_helper
    # The helper has neither binary (not in its environment, not on its PATH); the caller
    # still has BANGER_FIRECRACKER and BANGER_JAILER set, as a user's shell may.
    unset BANGER_FIRECRACKER BANGER_JAILER
    PATH="/usr/sbin:/usr/bin:/sbin:/bin:$BIN" start_helper_in "$NS_H" --owner "$OWNER_UID"
    export BANGER_FIRECRACKER="$STANDIN_FIRECRACKER" BANGER_JAILER="$STANDIN_JAILER"
    run --separate-stderr banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20
    assert_failure 1
    [[ "$stderr" == *"banger up: error: t1: the root helper has no firecracker binary to launch"* ]]
    [[ "$stderr" == *"fix: sudo banger system install --firecracker PATH"* ]]
    [[ "$stderr" == *"your BANGER_FIRECRACKER=$STANDIN_FIRECRACKER is not what it launches"* ]]
    [[ "$stderr" == *"nothing was changed on this host; once that is fixed, run: banger up t1"* ]]
    assert_output ""
    nothing_made t1
}

@test "banger up (stand-in firecracker): an image that does not exist fails before anything is made; the same name then comes up with another image, nothing ignored (issue 13, items 2 and 6)" {
    run --separate-stderr banger up t5 --image nosuch --wait-console STANDIN_GUEST_READY --timeout 20
    assert_failure 1
    [[ "$stderr" == *"no image named nosuch"* ]]
    [[ "$stderr" == *"fix: make it: sudo banger image build nosuch --debian bookworm"* ]]
    nothing_made t5
    run --separate-stderr banger up t5 --image default --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    [[ "$stderr" != *"ignoring"* ]]
    echo "$output" | jq -e '.spec.image == "default" and .vm.state == "running"'
    # On an existing VM, a different spec is said to be ignored, with how to change it.
    run --separate-stderr banger up t5 --image other --vcpus 1 --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    [[ "$stderr" == *"t5 exists; ignoring --image other (its spec is kept: 'banger rm t5 --yes', then banger up again, to change it)"* ]]
}

@test "banger up (stand-in firecracker): a VM directory with only the unfinished write of a first record (a banger-vm new killed, or racing) is a VM not made yet" {
    mkdir -p "$BANGER_STATE_DIR/vms/t6"
    echo '{"v":1' >"$BANGER_STATE_DIR/vms/t6/.vm.json.tmp.999999.1"
    chown "$OWNER_UID:$OWNER_UID" "$BANGER_STATE_DIR/vms" "$BANGER_STATE_DIR/vms/t6" "$BANGER_STATE_DIR/vms/t6/.vm.json.tmp.999999.1"
    run --separate-stderr banger up t6 --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
    echo "$output" | jq -e '.name == "t6" and .vm.state == "running"'
}

@test "banger up: /dev/kvm that is not the KVM device fails before anything is made (issue 13, item 2)" {
    [ -e /dev/kvm ] || skip "no /dev/kvm on this host to bind a file over"
    # In a private mount namespace of this test: a plain file over /dev/kvm.
    touch "$BATS_TEST_TMPDIR/not-kvm"
    run --separate-stderr unshare -m --propagation private sh -c \
        'mount --bind "$1" /dev/kvm && exec banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20' _ "$BATS_TEST_TMPDIR/not-kvm"
    assert_failure 1
    [[ "$stderr" == *"/dev/kvm is not a character device"* ]]
    [[ "$stderr" == *"nothing was changed on this host"* ]]
    nothing_made t1
}

@test "banger up: BANGER_KVM_DEVICE moves the KVM check: a plain file there fails before anything is made" {
    touch "$BATS_TEST_TMPDIR/not-kvm"
    BANGER_KVM_DEVICE="$BATS_TEST_TMPDIR/not-kvm" run --separate-stderr banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20
    assert_failure 1
    [[ "$stderr" == *"$BATS_TEST_TMPDIR/not-kvm is not a character device"* ]]
    nothing_made t1
}

@test "banger up (stand-in firecracker): a step that fails after the host changed ends with the two next steps; banger rm undoes it all (issue 13, item 2)" {
    # A Firecracker that is executable (the preflight passes) but dies at once.
    stop_helper
    mkdir -p "$P_TMP/badfc"
    printf '#!/bin/sh\necho "firecracker: cannot start" >&2\nexit 1\n' >"$P_TMP/badfc/firecracker"
    chmod 755 "$P_TMP/badfc/firecracker"
    BANGER_FIRECRACKER="$P_TMP/badfc/firecracker" start_helper_in "$NS_H" --owner "$OWNER_UID"
    run --separate-stderr banger up t1 --wait-console STANDIN_GUEST_READY --timeout 5
    assert_failure 1
    [[ "$stderr" == *"banger up: t1 stopped at the jail step: "* ]]
    [[ "$stderr" == *"fix what is said above, then run again: banger up t1"* ]]
    [[ "$stderr" == *"or undo everything banger up made for t1: banger rm t1 --yes"* ]]
    # The record says how far it got; the undo leaves nothing.
    echo "$output" | jq -e '.error.step != null and .net.tap != null'
    run --separate-stderr banger rm t1 --yes
    assert_success
    nothing_made t1
}

@test "banger up/down/rm (stand-in firecracker): on a terminal a summary for people, no record, no key; --json or a pipe gives the records (issue 13, item 9)" {
    command -v script >/dev/null || skip "script (util-linux) is not installed"
    run script -qec "banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20 2>/dev/null" /dev/null
    assert_success
    assert_output --regexp 't1: running, 10\.200\.0\.2, 1 vCPU, 512 MiB, image default'
    assert_output --partial "ssh:      banger vm ssh t1"
    assert_output --partial "stop:     banger down t1"
    refute_output --partial '{"v":1'
    refute_output --partial "ssh-ed25519"
    refute_output --partial "BEGIN OPENSSH"
    run script -qec "banger up t1 --json --wait-console STANDIN_GUEST_READY --timeout 20 2>/dev/null" /dev/null
    assert_success
    assert_output --partial '{"v":1,"type":"vm","name":"t1"'
    run script -qec "banger down t1 --timeout 2 2>/dev/null" /dev/null
    assert_success
    assert_output --regexp "t1: stopped, .*the disk stays: 'banger up t1' starts it again"
    refute_output --partial '{"v":1'
    run script -qec "banger rm t1 --yes 2>/dev/null" /dev/null
    assert_success
    assert_output --partial "t1: removed"
    run banger vm status t1
    assert_failure
}

@test "banger up/down/rm: --help, --version, usage errors, like every binary (issue 13, item 7)" {
    local b
    for b in up down rm; do
        run banger "$b" --help
        assert_success
        assert_output --partial "Usage:"
        assert_output --partial "--json"
        run banger "$b" --version
        assert_success
        assert_output --regexp "^banger-$b [0-9.]+ \(commit [0-9a-z]+\)$"
        run banger "$b" 'Bad!'
        assert_failure 2
        assert_output --partial 'invalid VM name "Bad!"'
    done
    run banger up a b
    assert_failure 2
    run banger up a --launcher chroot
    assert_failure 2
}
