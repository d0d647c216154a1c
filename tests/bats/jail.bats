#!/usr/bin/env bats
# banger-jail as a user runs it, as root, with the Firecracker and jailer TEST STAND-INS
# (tests/standin; not Firecracker). Each test has its own mount namespace, helper, jail dir
# and VM names; teardown kills only the PIDs its own pidfiles name.

load test_helper
load jail_helper

setup() {
    banger_env
    require_root
    [ -x "$STANDIN_FIRECRACKER" ] && [ -x "$STANDIN_JAILER" ] ||
        skip "stand-ins not built (cargo build -p banger-standin)"
    jail_env
    ns_start
    jail_start_helper
    VM=$(vm_name)
}

teardown() {
    jail_teardown
}

# shellcheck disable=SC2120 # called with flags through bats' run, which shellcheck does not follow
launch() {
    vm_record "$VM" | in_ns banger-jail launch "$@"
}

@test "jail (stand-in firecracker, stand-in jailer): launch stages the chroot, drops to the owner and answers on the API symlink" {
    run launch
    assert_success
    rec=$output
    chroot="$BANGER_JAIL_DIR/firecracker/$VM/root"
    echo "$rec" | jq -e --arg c "$chroot" --arg n "$VM" '.jail.launcher == "jailer" and .jail.id == $n and .jail.chroot == $c'
    echo "$rec" | jq -e '.jail.kernel == "/vmlinux" and .jail.rootfs == "/rootfs" and .jail.initrd == null'
    echo "$rec" | jq -e --arg s "$BANGER_RUN_DIR/vms/$VM.sock" '.jail.api_sock == $s and (.jail.start_time | type) == "number"'
    echo "$rec" | jq -e '.spec.vcpus == 2 and .snap.method == "copy"'
    # Firecracker and the jail dir on one filesystem: the jailer copies it itself.
    if [ "$(stat -c %d "$(readlink -f "$STANDIN_FIRECRACKER")")" = "$(stat -c %d "$BANGER_JAIL_DIR")" ]; then
        echo "$rec" | jq -e --arg f "$(readlink -f "$STANDIN_FIRECRACKER")" '.jail.argv | index($f) != null'
        [ ! -e "$BANGER_JAIL_DIR/.exec" ]
    fi
    pid=$(echo "$rec" | jq -r .jail.pid)
    [ "$(tr -d '[:space:]' <"$chroot/firecracker.pid")" = "$pid" ]
    [ "$(cat /proc/"$pid"/comm)" = firecracker ]
    [ "$(awk '{print $22}' /proc/"$pid"/stat)" = "$(echo "$rec" | jq -r .jail.start_time)" ]
    [ "$(stat -c %u /proc/"$pid")" = "$OWNER_UID" ]
    # Its own session: not in the helper's process group.
    [ "$(ps -o sid= -p "$pid" | tr -d ' ')" != "$(ps -o sid= -p "$HELPER_PID" | tr -d ' ')" ]
    # Only what this VM needs, owned by the owner; the disk is the same inode (hard link).
    [ "$(stat -c %i "$chroot/rootfs")" = "$(stat -c %i "$BANGER_STATE_DIR/vms/$VM/disk.ext4")" ]
    for f in rootfs console.log firecracker.log metrics.json; do
        [ "$(stat -c %u "$chroot/$f")" = "$OWNER_UID" ] || { echo "$f not the owner's" >&2; false; }
    done
    # The kernel is the image's own inode, linked, not given away: still root's, and the
    # owner may read it.
    kernel="$BANGER_STATE_DIR/images/tiny/vmlinux"
    [ "$(stat -c %i "$chroot/vmlinux")" = "$(stat -c %i "$kernel")" ]
    [ "$(stat -c %u "$kernel")" = 0 ]
    as_uid "$OWNER_UID" test -r "$chroot/vmlinux"
    # The stored record has the section; the API answers through the short symlink.
    jq -e .jail "$BANGER_STATE_DIR/vms/$VM/vm.json" >/dev/null
    [ -L "$BANGER_RUN_DIR/vms/$VM.sock" ]
    run curl -s --unix-socket "$BANGER_RUN_DIR/vms/$VM.sock" http://localhost/
    assert_success
    assert_output --partial '"id"'
    # The console goes to the keeper's FIFO (PUT /serial before any InstanceStart), and from
    # there to a file the owner can read.
    jq -s -e 'map(select(.path == "/serial"))[0].body == {"serial_out_path": "/console.fifo"}' \
        "$chroot/run/standin-requests.jsonl"
    [ -p "$chroot/console.fifo" ]
    as_uid "$OWNER_UID" test -r "$(echo "$rec" | jq -r .jail.console)"
    # The jailer got exactly the argv recorded.
    jq -e --argjson a "$(echo "$rec" | jq -c '.jail.argv')" '.argv == $a' "$chroot/standin-jailer.json"
    run in_ns banger-jail teardown "$VM"
    assert_success
    assert_nothing_left "$VM"
}

@test "jail (stand-in firecracker, stand-in jailer): find: launch again finds the same Firecracker, also after a helper restart" {
    run launch
    assert_success
    pid=$(echo "$output" | jq -r .jail.pid)
    stop_helper
    alive "$pid"
    jail_start_helper
    run in_ns banger-jail launch "$VM"
    assert_success
    [ "$(echo "$output" | jq -r .jail.pid)" = "$pid" ]
    [ "$(ledger_jq '[.entries[] | select(.kind == "jail")] | length')" = 1 ]
    run in_ns banger-jail list
    assert_success
    echo "$output" | jq -e --arg n "$VM" --argjson p "$pid" 'select(.name == $n) | .type == "jail" and .running and .live_pid == $p'
    # A recorded pid that is stale (but the pidfile is right) is found again and corrected.
    jq '.jail.pid = 1 | .jail.start_time = 1' "$BANGER_STATE_DIR/vms/$VM/vm.json" >"$BATS_TEST_TMPDIR/r"
    cp "$BATS_TEST_TMPDIR/r" "$BANGER_STATE_DIR/vms/$VM/vm.json"
    run in_ns banger-jail launch "$VM"
    assert_success
    [ "$(echo "$output" | jq -r .jail.pid)" = "$pid" ]
    in_ns banger-jail teardown "$VM" >/dev/null
    assert_nothing_left "$VM"
}

@test "jail (stand-in firecracker, stand-in jailer): teardown stops Firecracker, removes chroot and symlink, keeps the disk and the console" {
    launch >/dev/null
    pid=$(jq -r .jail.pid "$BANGER_STATE_DIR/vms/$VM/vm.json")
    run in_ns banger-jail teardown "$VM"
    assert_success
    echo "$output" | jq -e 'has("jail") | not'
    run alive "$pid"
    assert_failure
    [ ! -e "$BANGER_RUN_DIR/vms/$VM.sock" ]
    [ -f "$BANGER_STATE_DIR/vms/$VM/disk.ext4" ]
    [ -f "$BANGER_STATE_DIR/vms/$VM/console.log" ]
    jq -e 'has("jail") | not' "$BANGER_STATE_DIR/vms/$VM/vm.json"
    assert_nothing_left "$VM"
    # Idempotent: a second teardown has nothing to do and succeeds.
    run in_ns banger-jail teardown "$VM"
    assert_success
}

@test "jail (stand-in firecracker, stand-in jailer): the serial console reaches console.log, readable by the owner, kept after teardown" {
    run launch
    assert_success
    rec=$output
    sock=$(echo "$rec" | jq -r .jail.api_sock)
    put() { curl -sS --unix-socket "$sock" -X PUT "http://localhost$1" -H 'Content-Type: application/json' -d "$2" -w '%{http_code}'; }
    [ "$(put /boot-source "{\"kernel_image_path\":\"$(echo "$rec" | jq -r .jail.kernel)\",\"boot_args\":\"console=ttyS0 t=$VM\"}")" = 204 ]
    [ "$(put /drives/rootfs "{\"drive_id\":\"rootfs\",\"path_on_host\":\"$(echo "$rec" | jq -r .jail.rootfs)\",\"is_root_device\":true,\"is_read_only\":false}")" = 204 ]
    [ "$(put /actions '{"action_type":"InstanceStart"}')" = 204 ]
    console=$(echo "$rec" | jq -r .jail.console)
    for _ in $(seq 1 100); do grep -q GUEST_READY "$console" 2>/dev/null && break; sleep 0.02; done
    run as_uid "$OWNER_UID" cat "$console"
    assert_success
    assert_output --partial "cmdline=console=ttyS0 t=$VM"
    in_ns banger-jail teardown "$VM" >/dev/null
    grep -q "t=$VM" "$BANGER_STATE_DIR/vms/$VM/console.log"
    assert_nothing_left "$VM"
}

@test "jail (stand-in firecracker, stand-in jailer): teardown after Firecracker was killed from outside" {
    launch >/dev/null
    pid=$(jq -r .jail.pid "$BANGER_STATE_DIR/vms/$VM/vm.json")
    kill -9 "$pid"
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.02; done
    run in_ns banger-jail teardown "$VM"
    assert_success
    assert_nothing_left "$VM"
    # And a launch after that starts a fresh one.
    run in_ns banger-jail launch "$VM"
    assert_success
    [ "$(echo "$output" | jq -r .jail.pid)" != "$pid" ]
    in_ns banger-jail teardown "$VM" >/dev/null
    assert_nothing_left "$VM"
}

@test "jail (stand-in firecracker, stand-in jailer): a chroot whose staging fails half way is removed" {
    vm_record "$VM" >/dev/null
    img="$BANGER_STATE_DIR/images/tiny"
    # The kernel is linked, then the initrd is missing: everything made goes again.
    run helper_call "{\"op\":\"jail.launch\",\"args\":{\"name\":\"$VM\",\"kernel\":\"$img/vmlinux\",\"initrd\":\"$img/initrd\",\"rootfs\":\"$BANGER_STATE_DIR/vms/$VM/disk.ext4\",\"vcpus\":1,\"mem_mib\":128}}"
    assert_output --partial '"ok":false'
    assert_output --partial "initrd"
    assert_nothing_left "$VM"
    [ -f "$img/vmlinux" ] && [ -f "$BANGER_STATE_DIR/vms/$VM/disk.ext4" ]
    # A jailer that fails after staging: the chroot goes too, and the error says why.
    stop_helper
    BANGER_JAILER=/bin/false jail_start_helper
    run launch
    assert_failure 1
    assert_output --partial "the jailer failed"
    echo "$output" | jq -e '.error.step == "jail"' 2>/dev/null || true
    assert_nothing_left "$VM"
    # A Firecracker that never answers: the timeout names the log, and nothing is left.
    stop_helper
    printf '#!/bin/sh\nexit 3\n' >"$JAIL_TMP/firecracker"
    chmod +x "$JAIL_TMP/firecracker"
    BANGER_FIRECRACKER="$JAIL_TMP/firecracker" BANGER_JAILER=/bin/true jail_start_helper
    run launch --timeout 1
    assert_failure 1
    assert_output --partial "timed out waiting for"
    assert_nothing_left "$VM"
}

@test "jail (stand-in firecracker, stand-in jailer): a disk on another filesystem is bind-mounted, and no mount leaks to the host" {
    vm_record "$VM" >/dev/null
    # The jail dir on its own tmpfs in the test's namespace: no hard link across filesystems.
    mkdir -p "$BANGER_JAIL_DIR"
    in_ns mount -t tmpfs -o mode=0755 tmpfs "$BANGER_JAIL_DIR"
    run launch
    assert_success
    # Firecracker lies on another filesystem: the jailer is given the helper's copy of it
    # beside the jails (root's, made once per binary), where its own copy shares blocks.
    exec_file=$(echo "$output" | jq -r '.jail.argv as $a | $a[($a | index("--exec-file")) + 1]')
    [[ "$exec_file" == "$BANGER_JAIL_DIR/.exec/"*/firecracker* ]]
    in_ns cmp "$exec_file" "$(readlink -f "$STANDIN_FIRECRACKER")"
    [ "$(in_ns stat -c %u:%a "$(dirname "$exec_file")")" = 0:700 ]
    chroot="$BANGER_JAIL_DIR/firecracker/$VM/root"
    run in_ns grep -F " $chroot/rootfs " /proc/self/mountinfo
    assert_success
    run grep -F "$chroot" /proc/self/mountinfo
    assert_failure
    ledger_jq -e '[.entries[] | select(.kind == "mount")] | length == 2'
    # Writes reach the VM's own disk.
    echo hello | in_ns dd of="$chroot/rootfs" bs=1 seek=4096 conv=notrunc status=none
    [ "$(dd if="$BANGER_STATE_DIR/vms/$VM/disk.ext4" bs=1 skip=4096 count=5 status=none)" = hello ]
    run in_ns banger-jail teardown "$VM"
    assert_success
    run in_ns grep -F "$chroot" /proc/self/mountinfo
    assert_failure
    [ -f "$BANGER_STATE_DIR/vms/$VM/disk.ext4" ]
    assert_nothing_left "$VM"
    # A second VM gets the same copy, not a new one.
    VM2="${VM}b"
    vm_record "$VM2" | in_ns banger-jail launch >"$BATS_TEST_TMPDIR/second.json"
    [ "$(jq -r '.jail.argv as $a | $a[($a | index("--exec-file")) + 1]' "$BATS_TEST_TMPDIR/second.json")" = "$exec_file" ]
    [ "$(in_ns find "$BANGER_JAIL_DIR/.exec" -type f | wc -l)" -eq 1 ]
    in_ns banger-jail teardown "$VM2" >/dev/null
    assert_nothing_left "$VM2"
    in_ns umount "$BANGER_JAIL_DIR"
}

@test "jail (stand-in firecracker, stand-in jailer): a block-device disk is mknod'ed with the same major:minor" {
    command -v losetup >/dev/null || skip "no losetup"
    vm_record "$VM" >/dev/null
    dev=$(losetup -f --show "$BANGER_STATE_DIR/vms/$VM/disk.ext4") || skip "no loop devices here"
    # As if banger-snap had made it: the ledger names the device for this VM.
    mkdir -p "$BANGER_ROOT_DIR"
    jq -n --arg n "$VM" --arg d "$dev" '{v:1,entries:[{vm:$n,kind:"loop",id:$d,created_at:"t"}]}' >"$BANGER_ROOT_DIR/ledger.json"
    vm_record "$VM" "$dev" >/dev/null
    run in_ns banger-jail launch "$VM"
    assert_success
    chroot="$BANGER_JAIL_DIR/firecracker/$VM/root"
    [ -b "$chroot/rootfs" ]
    [ "$(stat -c '%t:%T' "$chroot/rootfs")" = "$(stat -c '%t:%T' "$dev")" ]
    [ "$(stat -c %u "$chroot/rootfs")" = "$OWNER_UID" ]
    in_ns banger-jail teardown "$VM" >/dev/null
    [ -b "$dev" ]
    losetup -d "$dev"
    [ ! -e "$BANGER_JAIL_DIR/firecracker/$VM" ]
    # A device the ledger does not hold for this VM is refused.
    run helper_call "{\"op\":\"jail.launch\",\"args\":{\"name\":\"$VM\",\"kernel\":\"$BANGER_STATE_DIR/images/tiny/vmlinux\",\"rootfs\":\"/dev/sda\",\"vcpus\":1,\"mem_mib\":128}}"
    assert_output --partial '"code":"invalid_path"'
}

@test "jail (stand-in firecracker): --launcher direct runs Firecracker as the owner without a chroot" {
    run launch --launcher direct
    assert_success
    echo "$output" | jq -e '.jail.launcher == "direct" and .jail.chroot == null'
    pid=$(echo "$output" | jq -r .jail.pid)
    [ "$(stat -c %u /proc/"$pid")" = "$OWNER_UID" ]
    dir="$BANGER_JAIL_DIR/direct/$VM/root"
    echo "$output" | jq -e --arg d "$dir" '.jail.rootfs == ($d + "/rootfs") and .jail.console == ($d + "/console.log")'
    # Staged by root, then the owner's: Firecracker makes its socket there.
    [ "$(stat -c %u "$dir")" = "$OWNER_UID" ]
    [ "$(stat -c %u "$BANGER_JAIL_DIR/direct/$VM")" = 0 ]
    run curl -s --unix-socket "$BANGER_RUN_DIR/vms/$VM.sock" http://localhost/
    assert_success
    run in_ns banger-jail teardown "$VM"
    assert_success
    run alive "$pid"
    assert_failure
    assert_nothing_left "$VM"
}

@test "jail: the helper refuses paths outside its roots, unknown fields and bad names" {
    vm_record "$VM" >/dev/null
    k="$BANGER_STATE_DIR/images/tiny/vmlinux"
    d="$BANGER_STATE_DIR/vms/$VM/disk.ext4"
    call() { helper_call "{\"op\":\"jail.launch\",\"args\":$1}"; }
    run call "{\"name\":\"$VM\",\"kernel\":\"/etc/passwd\",\"rootfs\":\"$d\",\"vcpus\":1,\"mem_mib\":128}"
    assert_output --partial '"code":"invalid_path"'
    run call "{\"name\":\"$VM\",\"kernel\":\"$k\",\"rootfs\":\"/etc/shadow\",\"vcpus\":1,\"mem_mib\":128}"
    assert_output --partial '"code":"invalid_path"'
    ln -s /etc/shadow "$BANGER_STATE_DIR/vms/$VM/evil"
    run call "{\"name\":\"$VM\",\"kernel\":\"$k\",\"rootfs\":\"$BANGER_STATE_DIR/vms/$VM/evil\",\"vcpus\":1,\"mem_mib\":128}"
    assert_output --partial '"code":"invalid_path"'
    run call "{\"name\":\"$VM\",\"kernel\":\"$k\",\"rootfs\":\"$d\",\"vcpus\":1,\"mem_mib\":128,\"exec_file\":\"/bin/sh\"}"
    assert_output --partial '"code":"invalid_args"'
    run call "{\"name\":\"../x\",\"kernel\":\"$k\",\"rootfs\":\"$d\",\"vcpus\":1,\"mem_mib\":128}"
    assert_output --partial '"code":"invalid_name"'
    run helper_call '{"op":"jail.teardown","args":{"name":"Bad"}}'
    assert_output --partial '"code":"invalid_name"'
    assert_nothing_left "$VM"
}

@test "jail: a record without snap or spec fails clearly and forwards errors" {
    mkdir -p "$BANGER_STATE_DIR/vms/$VM"
    jq -cn --arg n "$VM" '{v:1,type:"vm",name:$n,spec:{image:"tiny"}}' >"$BANGER_STATE_DIR/vms/$VM/vm.json"
    run bash -c "jq -cn --arg n '$VM' '{v:1,type:\"vm\",name:\$n}' | nsenter -t $NS_PID -m -- banger-jail launch"
    assert_failure 1
    assert_output --partial "no snap.path (run banger-snap create first)"
    run bash -c "jq -cn --arg n '$VM' '{v:1,type:\"vm\",name:\$n,error:{step:\"net\",code:\"x\",message:\"m\"}}' | banger-jail launch"
    assert_failure 1
    echo "$output" | jq -e '.error.step == "net"'
}

@test "banger-jail: --help, --version and usage errors" {
    run banger-jail --help
    assert_success
    assert_output --partial "--launcher"
    assert_output --partial "--grace"
    run banger-jail --version
    assert_output --partial "banger-jail "
    run banger-jail launch --frobnicate
    assert_failure 2
    run banger-jail launch --launcher chroot
    assert_failure 2
    run banger-jail teardown --grace lots
    assert_failure 2
    run banger-jail
    assert_failure 2
}

@test "jail (stand-in firecracker): a build under a 0700 directory: launch starts the keeper as the owner; a Firecracker the owner cannot reach is refused before anything is staged (issue 13, item 14)" {
    # banger-jail and the keeper in a directory only root may enter (a checkout under /root).
    local priv="$JAIL_TMP/priv"
    mkdir -m 0700 "$priv"
    mkdir "$priv/bin" "$priv/fc"
    cp "$BIN/banger-jail" "$BIN/banger-console-keeper" "$priv/bin/"
    vm_record "$VM" >/dev/null
    run in_ns "$priv/bin/banger-jail" launch "$VM"
    assert_success
    local keeper
    keeper=$(jq -r .jail.keeper_pid "$BANGER_STATE_DIR/vms/$VM/vm.json")
    [ "$(cat /proc/"$keeper"/comm)" = banger-console- ]
    [ "$(stat -c %u /proc/"$keeper")" = "$OWNER_UID" ]
    run in_ns "$priv/bin/banger-jail" teardown "$VM"
    assert_success
    # The direct launcher runs Firecracker as the owner from where it is: under the 0700
    # directory it cannot, and launch says so before the helper stages anything.
    cp "$STANDIN_FIRECRACKER" "$priv/fc/firecracker"
    stop_helper
    BANGER_FIRECRACKER="$priv/fc/firecracker" jail_start_helper
    export BANGER_FIRECRACKER="$priv/fc/firecracker"
    run in_ns banger-jail launch --launcher direct "$VM"
    assert_failure 1
    assert_output --partial "the direct launcher runs $priv/fc/firecracker as uid $OWNER_UID, who cannot reach it: uid $OWNER_UID may not enter $priv"
    [ ! -e "$BANGER_JAIL_DIR/direct/$VM" ]
}

@test "jail launch (stand-in firecracker): no Firecracker for the helper is refused before anything is staged; jail list --table (issue 13, item 2)" {
    stop_helper
    unset BANGER_FIRECRACKER
    PATH="/usr/sbin:/usr/bin:/sbin:/bin:$BIN" jail_start_helper
    run launch
    assert_failure 1
    assert_output --partial "the root helper has no firecracker binary to launch (fix: sudo banger system install --firecracker PATH"
    [ ! -e "$BANGER_JAIL_DIR/firecracker/$VM" ]
    run in_ns banger-jail list --table
    assert_success
    assert_line --index 0 --regexp '^NAME +LAUNCHER +RUNNING +PID +DIR$'
}
