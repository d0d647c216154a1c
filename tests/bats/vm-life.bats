#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
bats_require_minimum_version 1.5.0
# banger-vm's VM life against the Firecracker TEST STAND-IN (tests/standin, not Firecracker),
# launched here by hand with a hand-written jail section, so these tests exercise banger-vm
# alone: the API bodies it sends, its state changes, waits, stop/kill and console.

load test_helper

setup() {
    banger_env
    stub_image x y debian
    FC_PIDS=()
    mkdir -p "$BATS_TEST_TMPDIR/vm"
    printf 'kernel' >"$BATS_TEST_TMPDIR/vm/vmlinux"
    truncate -s 1M "$BATS_TEST_TMPDIR/vm/rootfs.ext4"
}

teardown() {
    local p
    for p in "${FC_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    banger_teardown
}

# launch_standin NAME: starts the stand-in on a socket of its own, console to a file, and
# writes the record's jail section the way banger-jail would (launcher "direct").
launch_standin() {
    local name=$1 dir="$BATS_TEST_TMPDIR/vm/$1"
    mkdir -p "$dir"
    rm -f "$dir/api.sock"
    STANDIN_REQUESTS="$dir/requests.jsonl" "$STANDIN_FIRECRACKER" --api-sock "$dir/api.sock" --id "$name" \
        >"$dir/console.log" 2>"$dir/fc.err" &
    local pid=$!
    FC_PIDS+=("$pid")
    for _ in $(seq 1 200); do [ -S "$dir/api.sock" ] && break; sleep 0.01; done
    local st
    st=$(awk '{print $22}' "/proc/$pid/stat")
    banger-vm status "$name" | jq -c --arg sock "$dir/api.sock" --arg con "$dir/console.log" \
        --arg k "$BATS_TEST_TMPDIR/vm/vmlinux" --arg r "$BATS_TEST_TMPDIR/vm/rootfs.ext4" \
        --argjson pid "$pid" --argjson st "$st" --arg fc "$STANDIN_FIRECRACKER" \
        'del(.vm) | .jail = {launcher: "direct", id: .name, chroot: null, api_sock: $sock, pid: $pid,
          start_time: $st, argv: [$fc, "--api-sock", $sock, "--id", .name], console: $con,
          kernel: $k, initrd: null, rootfs: $r}' >"$BATS_TEST_TMPDIR/rec.json"
    jq . "$BATS_TEST_TMPDIR/rec.json" >"$BANGER_STATE_DIR/vms/$name/vm.json"
    LAST_PID=$pid
}

requests() {
    cat "$BATS_TEST_TMPDIR/vm/$1/requests.jsonl"
}

@test "vm start (stand-in firecracker): sends the exact API bodies, InstanceStart last, waits for the console" {
    banger-vm new a --image x --vcpus 2 --mem 256 >/dev/null
    launch_standin a
    export BANGER_BOOT_ARGS_EXTRA="nogbpages noxsave"
    run --separate-stderr banger-vm start a --wait-console STANDIN_GUEST_READY --timeout 10
    assert_success
    echo "$output" | jq -e '.vm.state == "running" and (.vm.boot_ms | type) == "number" and .vm.ready == "console"'
    run requests a
    local puts
    puts=$(jq -c 'select(.method != "GET") | [.method, .path, .status]' <<<"$output")
    assert_equal "$puts" '["PUT","/machine-config",204]
["PUT","/boot-source",204]
["PUT","/drives/rootfs",204]
["PUT","/actions",204]'
    jq -s -e 'map(select(.path == "/machine-config"))[0] | .body == {"vcpu_count": 2, "mem_size_mib": 256}' <<<"$output"
    jq -s -e --arg k "$BATS_TEST_TMPDIR/vm/vmlinux" 'map(select(.path == "/boot-source"))[0] | .body == {"kernel_image_path": $k, "boot_args": "console=ttyS0 reboot=k panic=1 pci=off nogbpages noxsave"}' <<<"$output"
    jq -s -e --arg r "$BATS_TEST_TMPDIR/vm/rootfs.ext4" 'map(select(.path == "/drives/rootfs"))[0] | .body == {"drive_id": "rootfs", "path_on_host": $r, "is_root_device": true, "is_read_only": false}' <<<"$output"
    jq -s -e 'map(select(.path == "/actions"))[0] | .body == {"action_type": "InstanceStart"}' <<<"$output"
    run banger-vm console a
    assert_output --partial "STANDIN_GUEST_READY cmdline=console=ttyS0"
}

@test "vm start (stand-in firecracker): the network goes in as eth0 and as ip= on the command line" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    jq '.net = {"bridge":"banger0","tap":"lo","mac":"06:00:0a:c8:00:02","ip":"10.200.0.2","prefix":24,"gateway":"10.200.0.1","dns":["10.200.0.1"]}' \
        "$BANGER_STATE_DIR/vms/a/vm.json" >"$BATS_TEST_TMPDIR/r" && mv "$BATS_TEST_TMPDIR/r" "$BANGER_STATE_DIR/vms/a/vm.json"
    run banger-vm start a --no-wait
    # The stand-in opens the tap like Firecracker does; "lo" is not a tap, so it refuses, and
    # Firecracker's fault_message reaches the user as is.
    assert_failure 1
    assert_output --partial "Firecracker refused PUT /network-interfaces/eth0 (400)"
    run requests a
    jq -s -e 'map(select(.path == "/network-interfaces/eth0"))[0] | .body == {"iface_id":"eth0","host_dev_name":"lo","guest_mac":"06:00:0a:c8:00:02"}' <<<"$output"
    run banger-vm status a
    refute_output --partial '"started_at"'
}

@test "vm start (stand-in firecracker): a guest that never comes up fails with the console tail" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    run --separate-stderr banger-vm start a --wait-console NEVER-PRINTED --timeout 1
    assert_failure 1
    [[ "$stderr" == *"did not come up within 1 s"* ]]
    [[ "$stderr" == *"STANDIN_GUEST_READY"* ]]
    echo "$output" | jq -e '.error.step == "start" and .error.code == "boot_timeout"'
}

@test "vm start (stand-in firecracker): a second start of a running VM changes nothing" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    banger-vm start a --no-wait >/dev/null
    run banger-vm start a --no-wait
    assert_success
    assert_output --partial '"state":"running"'
    [ "$(requests a | jq -s '[.[] | select(.path == "/actions")] | length')" -eq 1 ]
}

@test "vm start (stand-in firecracker): a record without a jail, or whose Firecracker is gone, says what to run" {
    banger-vm new a --image x >/dev/null
    run banger-vm start a
    assert_failure 1
    assert_output --partial "run 'banger-jail launch a' first"
    launch_standin a
    kill -9 "$LAST_PID"
    wait "$LAST_PID" 2>/dev/null || true
    run banger-vm start a
    assert_failure 1
    assert_output --partial "relaunch with 'banger-jail launch a'"
}

@test "vm start (stand-in firecracker): a broken record fails on that record only and the pipeline goes on" {
    banger-vm new a --image x >/dev/null
    banger-vm new b --image x >/dev/null
    launch_standin b
    # The store is the truth: a's stored record is the broken one.
    jq -c '.jail = {"api_sock": 17}' "$BANGER_STATE_DIR/vms/a/vm.json" >"$BATS_TEST_TMPDIR/a.json"
    cp "$BATS_TEST_TMPDIR/a.json" "$BANGER_STATE_DIR/vms/a/vm.json"
    run --separate-stderr bash -c "{ echo '{\"v\":1,\"type\":\"vm\",\"name\":\"a\"}'; banger-vm status b; } | banger-vm start --no-wait"
    assert_failure 1
    assert_line --index 0 --partial '"name":"a"'
    assert_line --index 0 --partial '"code":"damaged"'
    [[ "$stderr" == *"record's jail section is not what banger writes"* ]]
    run banger-vm status b
    echo "$output" | jq -e '.vm.state == "running"'
}

@test "vm pause/resume/status (stand-in firecracker): live state follows Firecracker" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    banger-vm start a --no-wait >/dev/null
    run banger-vm pause a
    assert_success
    run banger-vm status a
    echo "$output" | jq -e --argjson p "$LAST_PID" '.vm.state == "paused" and .vm.live.api_state == "Paused" and .vm.live.pid == $p and .vm.live.found_by == "recorded"'
    banger-vm resume a >/dev/null
    run banger-vm status a
    echo "$output" | jq -e '.vm.state == "running"'
    kill -9 "$LAST_PID"
    wait "$LAST_PID" 2>/dev/null || true
    run banger-vm pause a
    assert_failure 1
    assert_output --partial "cannot reach Firecracker's API"
    run banger-vm status a
    echo "$output" | jq -e '.vm.state == "stopped" and .vm.live.pid == null'
}

@test "vm stop (stand-in firecracker): Ctrl-Alt-Del ends Firecracker and the record says stopped" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    banger-vm start a --no-wait >/dev/null
    run banger-vm stop a --timeout 5
    assert_success
    echo "$output" | jq -e '.vm.state == "stopped" and .vm.stopped_by == "ctrl-alt-del"'
    ! kill -0 "$LAST_PID" 2>/dev/null || [ "$(awk '{print $3}' /proc/"$LAST_PID"/stat)" = Z ]
    run requests a
    assert_output --partial '"SendCtrlAltDel"'
}

@test "vm stop (stand-in firecracker): a VM whose Firecracker is already dead is marked stopped" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    kill -9 "$LAST_PID"
    wait "$LAST_PID" 2>/dev/null || true
    run banger-vm stop a
    assert_success
    echo "$output" | jq -e '.vm.state == "stopped" and .vm.stopped_by == "already-gone"'
}

@test "vm stop (stand-in firecracker): a guest ignoring Ctrl-Alt-Del is killed after the timeout" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    # Not started: the stand-in refuses SendCtrlAltDel before InstanceStart, like Firecracker.
    run --separate-stderr banger-vm stop a --timeout 1
    assert_success
    echo "$output" | jq -e '.vm.stopped_by == "kill"'
}

@test "vm kill (stand-in firecracker): never signals a process that fails the identity checks" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    sleep 300 &
    local decoy=$!
    FC_PIDS+=("$decoy")
    # Point the record at the decoy (wrong comm, wrong cmdline) and at no socket.
    jq --argjson p "$decoy" '.jail.pid = $p | .jail.start_time = 1 | .jail.api_sock = "/nonexistent.sock"' \
        "$BANGER_STATE_DIR/vms/a/vm.json" >"$BATS_TEST_TMPDIR/r" && mv "$BATS_TEST_TMPDIR/r" "$BANGER_STATE_DIR/vms/a/vm.json"
    run banger-vm kill a
    assert_success
    kill -0 "$decoy"
    kill -0 "$LAST_PID"
}

@test "vm console (stand-in firecracker): --lines and --follow" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    banger-vm start a --no-wait >/dev/null
    printf 'line1\nline2\nline3\n' >>"$BATS_TEST_TMPDIR/vm/a/console.log"
    run banger-vm console a --lines 2
    assert_output $'line2\nline3'
    (sleep 0.5; printf 'later\n' >>"$BATS_TEST_TMPDIR/vm/a/console.log"; sleep 0.3; kill -9 "$LAST_PID") &
    run timeout 10 banger-vm console a --follow
    assert_success
    assert_output --partial "later"
}

@test "vm ssh/exec (stand-in firecracker): a VM that does not run is said so at once, with the command that starts it (issue 13, item 10)" {
    banger-vm new a --image x >/dev/null
    jq '.net = {"ip":"10.200.0.9"} | .snap = {"method":"copy","host_keys":{"ed25519":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey root@a"}}' \
        "$BANGER_STATE_DIR/vms/a/vm.json" >"$BATS_TEST_TMPDIR/r" && mv "$BATS_TEST_TMPDIR/r" "$BANGER_STATE_DIR/vms/a/vm.json"
    SECONDS=0
    run banger-vm ssh a
    assert_failure 1
    assert_output --partial "a is not running (it is prepared): start it with 'banger up a'"
    run banger-vm exec a -- true
    assert_failure 1
    assert_output --partial "start it with 'banger up a'"
    [ "$SECONDS" -lt 2 ]
    # Running, but its network gone (a hand-made record): the porcelain is what to run.
    launch_standin a
    jq 'del(.net)' "$BANGER_STATE_DIR/vms/a/vm.json" >"$BATS_TEST_TMPDIR/r" && mv "$BATS_TEST_TMPDIR/r" "$BANGER_STATE_DIR/vms/a/vm.json"
    run banger-vm exec a -- true
    assert_failure 1
    assert_output --partial "a has no network: 'banger down a && banger up a'"
    refute_output --partial "banger-net up"
}

@test "vm ssh/exec: refuses without a pinned host key (no trust on first use) (stand-in firecracker)" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    jq '.net = {"ip":"10.200.0.9"} | .snap = {"method":"copy"}' "$BANGER_STATE_DIR/vms/a/vm.json" >"$BATS_TEST_TMPDIR/r" \
        && mv "$BATS_TEST_TMPDIR/r" "$BANGER_STATE_DIR/vms/a/vm.json"
    run banger-vm exec a -- true
    assert_failure 1
    assert_output --partial "does not trust on first use"
    run banger-vm exec a
    assert_failure 2
}

@test "vm exec: runs ssh with the pinned key and the owner's identity, exit code passed through (stand-in firecracker)" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    jq '.net = {"ip":"10.200.0.9"} | .snap = {"method":"copy","host_keys":{"ed25519":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey root@a"}}' \
        "$BANGER_STATE_DIR/vms/a/vm.json" >"$BATS_TEST_TMPDIR/r" && mv "$BATS_TEST_TMPDIR/r" "$BANGER_STATE_DIR/vms/a/vm.json"
    mkdir -p "$BATS_TEST_TMPDIR/fakebin"
    printf '#!/bin/sh\nprintf "%%s\\n" "$@" >"%s/ssh-args"\nexit 7\n' "$BATS_TEST_TMPDIR" >"$BATS_TEST_TMPDIR/fakebin/ssh"
    chmod +x "$BATS_TEST_TMPDIR/fakebin/ssh"
    run env PATH="$BATS_TEST_TMPDIR/fakebin:$PATH" banger-vm exec a -- uname -r
    assert_failure 7
    run cat "$BATS_TEST_TMPDIR/ssh-args"
    assert_line "StrictHostKeyChecking=yes"
    assert_line "HostKeyAlias=a"
    assert_line "root@10.200.0.9"
    assert_line "uname -r"
    assert_line "$BANGER_STATE_DIR/ssh/id_ed25519"
    run cat "$BANGER_STATE_DIR/ssh/known_hosts.d/a"
    assert_output "a ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey"
    # The words are quoted for the guest's shell, so it runs exactly this argv.
    run env PATH="$BATS_TEST_TMPDIR/fakebin:$PATH" banger-vm exec a -- sh -c 'exit 3'
    run tail -n 1 "$BATS_TEST_TMPDIR/ssh-args"
    assert_output "sh -c 'exit 3'"
}

@test "vm snapshot/restore (stand-in firecracker): pause, Full snapshot, resume; restore into a fresh Firecracker" {
    banger-vm new a --image x >/dev/null
    launch_standin a
    banger-vm start a --no-wait >/dev/null
    run banger-vm snapshot a "$BATS_TEST_TMPDIR/snap1"
    assert_success
    echo "$output" | jq -e '.vm.state == "running" and (.vm.last_snapshot.dir | endswith("snap1"))'
    [ -s "$BATS_TEST_TMPDIR/snap1/vmstate" ] && [ -s "$BATS_TEST_TMPDIR/snap1/memory" ]
    jq -e '.type == "snapshot" and .name == "a"' "$BATS_TEST_TMPDIR/snap1/snapshot.json"
    run requests a
    assert_equal "$(jq -c 'select(.method == "PATCH" or .path == "/snapshot/create") | [.path, .body.state // .body.snapshot_type]' <<<"$output")" \
        '["/vm","Paused"]
["/snapshot/create","Full"]
["/vm","Resumed"]'
    # Restoring into a Firecracker that already runs a guest is refused.
    run banger-vm restore a "$BATS_TEST_TMPDIR/snap1"
    assert_failure 1
    assert_output --partial "already runs a guest"
    # A fresh Firecracker for the same VM: restore loads and resumes.
    banger-vm kill a >/dev/null
    launch_standin a
    run banger-vm restore a "$BATS_TEST_TMPDIR/snap1"
    assert_success
    echo "$output" | jq -e '.vm.state == "running" and (.vm.restored_from.dir | endswith("snap1"))'
    run requests a
    jq -s -e --arg d "$BATS_TEST_TMPDIR/snap1" 'map(select(.path == "/snapshot/load"))[-1].body == {"snapshot_path": ($d + "/vmstate"), "mem_backend": {"backend_type": "File", "backend_path": ($d + "/memory")}, "resume_vm": true}' <<<"$output"
    run banger-vm status a
    echo "$output" | jq -e '.vm.live.api_state == "Running"'
    run banger-vm restore a "$BATS_TEST_TMPDIR/nowhere"
    assert_failure 1
    assert_output --partial "not a banger-vm snapshot directory"
}
