#!/usr/bin/env bats
# banger-snap as a user runs it: VM disks by reflink (loop-mounted XFS) and by copy, the
# identity written into them (read back with debugfs), the helper ops and their
# validation, rollback of a failure half way, parallel creates, device-mapper.

load test_helper
load snap_helper

bats_require_minimum_version 1.5.0

setup() {
    banger_env
    require_root
}

teardown() {
    snap_teardown
}

@test "snap create: by copy where reflink is impossible, with a warning, and the identity written in" {
    make_image base
    local image_sum
    image_sum=$(sha256sum "$BANGER_STATE_DIR/images/base/rootfs.ext4")
    banger-vm new a --image base >/dev/null
    run --separate-stderr banger-snap create a
    assert_success
    [[ "$stderr" == *"warning: a:"*"full copy"* ]]
    echo "$output" | jq -e '.snap.method == "copy" and .snap.image == "base" and .snap.customized == true'
    local disk="$BANGER_STATE_DIR/vms/a/disk.ext4"
    echo "$output" | jq -e --arg d "$disk" '.snap.path == $d'
    [ "$(guest_cat "$disk" /etc/hostname)" = "a" ]
    guest_cat "$disk" /etc/hosts | grep -q $'127.0.1.1\ta'
    [ "$(guest_cat "$disk" /root/.ssh/authorized_keys)" = "$(jq -r .spec.ssh_pubkey "$BANGER_STATE_DIR/vms/a/vm.json")" ]
    # Fresh host keys, the public one in the record; the image's own key is gone.
    [ "$(guest_cat "$disk" /etc/ssh/ssh_host_ed25519_key.pub)" = "$(echo "$output" | jq -r .snap.host_keys.ed25519)" ]
    echo "$output" | jq -e '.snap.host_keys.ed25519 | startswith("ssh-ed25519 ") and endswith(" root@a")'
    run debugfs -R "stat /etc/ssh/ssh_host_rsa_key" "$disk"
    assert_output --partial "File not found"
    debugfs -R "stat /root/.ssh/authorized_keys" "$disk" 2>/dev/null | grep -q "Mode:  0600"
    # The image itself is untouched, and the disk a clean filesystem.
    [ "$(sha256sum "$BANGER_STATE_DIR/images/base/rootfs.ext4")" = "$image_sum" ]
    e2fsck -fn "$disk"
    # Saved, and in the ledger.
    jq -e '.snap.method == "copy"' "$BANGER_STATE_DIR/vms/a/vm.json"
    [ "$(ledger_count a)" -eq 1 ]
}

@test "snap create/rm: by reflink on a loop-mounted XFS, O(1): the clone shares the image's blocks" {
    xfs_state
    # An image with 48 MiB of real data: a copy would need that much space again.
    mkdir -p "$BATS_TEST_TMPDIR/tree/etc"
    echo image >"$BATS_TEST_TMPDIR/tree/etc/hostname"
    head -c 48M /dev/urandom >"$BATS_TEST_TMPDIR/tree/blob"
    mkfs.ext4 -q -F -d "$BATS_TEST_TMPDIR/tree" "$BATS_TEST_TMPDIR/base.ext4" 64M
    fake_kernel "$BATS_TEST_TMPDIR/vmlinux"
    banger-image import base --rootfs "$BATS_TEST_TMPDIR/base.ext4" --kernel "$BATS_TEST_TMPDIR/vmlinux" >/dev/null
    banger-vm new a --image base >/dev/null
    local before after
    sync
    before=$(df --output=used -B1 "$XFS_MNT" | tail -1)
    # --no-agent: no warning about this host having no agent for guests.
    run --separate-stderr banger-snap create --no-agent a
    assert_success
    sync
    after=$(df --output=used -B1 "$XFS_MNT" | tail -1)
    [ -z "$stderr" ]
    echo "$output" | jq -e '.snap.method == "reflink"'
    # Shared blocks: only the customization's few blocks are new.
    [ $((after - before)) -lt $((8 << 20)) ]
    local disk="$BANGER_STATE_DIR/vms/a/disk.ext4"
    [ "$(guest_cat "$disk" /etc/hostname)" = "a" ]
    cmp <(guest_cat "$disk" /blob) "$BATS_TEST_TMPDIR/tree/blob"
    run banger-snap list --table
    assert_output --partial "reflink"
    run banger-snap rm a
    assert_success
    echo "$output" | jq -e 'has("snap") | not'
    [ ! -e "$disk" ]
    [ "$(ledger_count a)" -eq 0 ]
    jq -e 'has("snap") | not' "$BANGER_STATE_DIR/vms/a/vm.json"
    # Then banger-vm rm works: nothing holds the VM.
    run banger-vm rm a
    assert_success
}

@test "snap create: --method copy is forced even on XFS; --method reflink fails clearly where reflink is impossible" {
    make_image base
    banger-vm new a --image base >/dev/null
    run banger-snap create --method reflink a
    assert_failure 1
    assert_output --partial "cannot reflink"
    assert_output --partial "--method copy"
    [ ! -e "$BANGER_STATE_DIR/vms/a/disk.ext4" ]
    [ "$(ledger_count)" -eq 0 ]
    xfs_state
    make_image base
    banger-vm new b --image base >/dev/null
    run --separate-stderr banger-snap create --method copy b
    assert_success
    echo "$output" | jq -e '.snap.method == "copy"'
}

@test "snap create: --disk-size grows the disk and its filesystem" {
    make_image base 16M
    banger-vm new a --image base >/dev/null
    run --separate-stderr banger-snap create a --disk-size 64M
    assert_success
    echo "$output" | jq -e '.snap.size_bytes == 67108864'
    local disk="$BANGER_STATE_DIR/vms/a/disk.ext4"
    [ "$(stat -c %s "$disk")" -eq 67108864 ]
    local blocks bsize
    blocks=$(dumpe2fs -h "$disk" 2>/dev/null | awk -F: '/^Block count/ { gsub(/ /, "", $2); print $2 }')
    bsize=$(dumpe2fs -h "$disk" 2>/dev/null | awk -F: '/^Block size/ { gsub(/ /, "", $2); print $2 }')
    [ $((blocks * bsize)) -eq 67108864 ]
    e2fsck -fn "$disk"
    # The spec's disk_size is used when no flag is given; smaller than the image is refused.
    banger-vm new b --image base --disk-size 8M >/dev/null
    run banger-snap create b
    assert_failure 1
    assert_output --partial "smaller than the image"
    [ ! -e "$BANGER_STATE_DIR/vms/b/disk.ext4" ]
}

@test "snap create: clones never share host keys" {
    make_image base
    banger-vm new a --image base >/dev/null
    banger-vm new b --image base >/dev/null
    run --separate-stderr banger-snap create a b
    assert_success
    [ "$(echo "$output" | jq -r .snap.host_keys.ed25519 | sort -u | wc -l)" -eq 2 ]
    [ "$(echo "$output" | jq -r .snap.host_keys.ecdsa | sort -u | wc -l)" -eq 2 ]
    if cmp -s <(guest_cat "$BANGER_STATE_DIR/vms/a/disk.ext4" /etc/ssh/ssh_host_ed25519_key) \
        <(guest_cat "$BANGER_STATE_DIR/vms/b/disk.ext4" /etc/ssh/ssh_host_ed25519_key); then
        echo "two clones share a host key" >&2
        false
    fi
}

@test "snap create: the record's net section is written for the guest's init and networkd" {
    make_image base
    # The stored record has the net section (as banger-net up would have saved it).
    banger-vm new a --image base | jq -c '.net = {"ip": "10.200.0.7/24", "gateway": "10.200.0.1", "dns": ["10.200.0.1"], "mac": "06:00:0a:c8:00:07", "tap": "bgr-a"}' >"$BATS_TEST_TMPDIR/rec"
    cp "$BATS_TEST_TMPDIR/rec" "$BANGER_STATE_DIR/vms/a/vm.json"
    run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/rec"
    assert_success
    echo "$output" | jq -e '.net.tap == "bgr-a"'
    local disk="$BANGER_STATE_DIR/vms/a/disk.ext4"
    guest_cat "$disk" /etc/banger/net.env | grep -qx 'BANGER_IP=10.200.0.7'
    guest_cat "$disk" /etc/banger/net.env | grep -qx 'BANGER_PREFIX=24'
    guest_cat "$disk" /etc/banger/net.json | jq -e '.ip == "10.200.0.7" and .gateway == "10.200.0.1"'
    guest_cat "$disk" /etc/systemd/network/10-banger.network | grep -qx 'Address=10.200.0.7/24'
    guest_cat "$disk" /etc/resolv.conf | grep -qx 'nameserver 10.200.0.1'
}

@test "helper snap.customize: vm + net alone rewrites the network files (what banger-net up calls)" {
    make_image base
    banger-vm new a --image base >/dev/null
    banger-snap create a 2>/dev/null >/dev/null
    start_helper
    run helper_call '{"op":"snap.customize","args":{"vm":"a","net":{"ip":"10.200.0.9","prefix":24,"gateway":"10.200.0.1","dns":["1.1.1.1"]}}}'
    echo "$output" | jq -e '.ok == true and .result.customized == true'
    local disk="$BANGER_STATE_DIR/vms/a/disk.ext4"
    guest_cat "$disk" /etc/banger/net.env | grep -qx 'BANGER_IP=10.200.0.9'
    guest_cat "$disk" /etc/resolv.conf | grep -qx 'nameserver 1.1.1.1'
    [ "$(guest_cat "$disk" /etc/hostname)" = "a" ]
    # The same network again: nothing is written (the disk's mtime stays), and a different
    # one is.
    local mtime
    mtime=$(stat -c %Y.%y "$disk")
    sleep 1.1
    run helper_call '{"op":"snap.customize","args":{"vm":"a","net":{"ip":"10.200.0.9","prefix":24,"gateway":"10.200.0.1","dns":["1.1.1.1"]}}}'
    echo "$output" | jq -e '.ok == true and .result.customized == false'
    [ "$(stat -c %Y.%y "$disk")" = "$mtime" ]
    run helper_call '{"op":"snap.customize","args":{"vm":"a","net":{"ip":"10.200.0.8","prefix":24,"gateway":"10.200.0.1","dns":["1.1.1.1"]}}}'
    echo "$output" | jq -e '.ok == true and .result.customized == true'
    guest_cat "$disk" /etc/banger/net.env | grep -qx 'BANGER_IP=10.200.0.8'
    # Outside the subnet, a bad MAC, a key with a newline: refused, nothing written.
    run helper_call '{"op":"snap.customize","args":{"vm":"a","net":{"ip":"192.168.1.9","prefix":24}}}'
    echo "$output" | jq -e '.ok == false and .error.code == "invalid_args"'
    assert_output --partial "outside the configured subnet"
    run helper_call '{"op":"snap.customize","args":{"vm":"a","ssh_pubkey":"ssh-ed25519 AAAA\nssh-rsa B"}}'
    echo "$output" | jq -e '.error.code == "invalid_args"'
    run helper_call '{"op":"snap.customize","args":{"vm":"nodisk","net":{"ip":"10.200.0.9","prefix":24}}}'
    echo "$output" | jq -e '.error.code == "not_found"'
}

@test "snap create: through the helper socket, the disk belongs to the owner" {
    # The owner's state dir, somewhere the owner can reach (the test's temp dir is root's).
    export BANGER_STATE_DIR="$HELPER_DIR/state"
    mkdir -p "$BANGER_STATE_DIR"
    chown "$OWNER_UID:$OWNER_UID" "$BANGER_STATE_DIR"
    make_image base
    export BANGER_OWNER_UID=$OWNER_UID
    start_helper --owner "$OWNER_UID"
    banger-vm new a --image base >/dev/null
    run --separate-stderr banger-snap create a
    assert_success
    [ "$(stat -c %u "$BANGER_STATE_DIR/vms/a/disk.ext4")" -eq "$OWNER_UID" ]
    grep -q "snap.create: ok" "$BATS_TEST_TMPDIR/helper.log"
    [ "$(guest_cat "$BANGER_STATE_DIR/vms/a/disk.ext4" /etc/hostname)" = "a" ]
}

@test "snap create: a failure injected half way (BANGER_TEST_FAIL_AT) leaves no ledger entry, no file, no loop device" {
    make_image base
    banger-vm new a --image base >/dev/null
    local point
    for point in snap.create:clone snap.customize snap.create:customize; do
        BANGER_TEST_FAIL_AT=$point run banger-snap create a
        assert_failure 1
        assert_output --partial "test hook: BANGER_TEST_FAIL_AT=$point"
        [ ! -e "$BANGER_STATE_DIR/vms/a/disk.ext4" ]
        [ "$(ledger_count)" -eq 0 ]
        [ -z "$(loops_of "$BATS_TEST_TMPDIR")" ]
        run ls -A "$BANGER_STATE_DIR/vms/a"
        assert_output "vm.json"
    done
    # The record is unchanged and a clean retry works.
    jq -e 'has("snap") | not' "$BANGER_STATE_DIR/vms/a/vm.json"
    run --separate-stderr banger-snap create a
    assert_success
}

@test "snap create: forcing dm-snapshot where device-mapper does not work fails cleanly (no loop device, ledger entry or COW file left)" {
    if dm_works; then
        skip "device-mapper works here: the dm-snapshot test below covers it"
    fi
    make_image base
    banger-vm new a --image base >/dev/null
    run banger-snap create --method dm-snapshot a
    assert_failure 1
    assert_output --partial "device-mapper does not work on this host"
    assert_output --partial "--method reflink or --method copy"
    [ -z "$(loops_of "$BATS_TEST_TMPDIR")" ]
    [ "$(ledger_count)" -eq 0 ]
    [ ! -e "$BANGER_STATE_DIR/vms/a/disk.cow" ]
}

@test "snap create/rm: dm-snapshot over a loop device (runs only where device-mapper works)" {
    if ! dm_works; then
        skip "SKIPPED LOUDLY: /dev/mapper/control does not work on this host (no device-mapper); the dm tables are unit-tested in helper/src/snap/dm.rs"
    fi
    make_image base
    banger-vm new a --image base >/dev/null
    run --separate-stderr banger-snap create a --disk-size 32M
    assert_success
    echo "$output" | jq -e '.snap.method == "dm-snapshot" and .snap.path == "/dev/mapper/banger-a"'
    [ "$(guest_cat /dev/mapper/banger-a /etc/hostname)" = "a" ]
    [ "$(guest_cat "$BANGER_STATE_DIR/images/base/rootfs.ext4" /etc/hostname)" = "image" ]
    run banger-snap rm a
    assert_success
    run dmsetup info banger-a
    assert_failure
    [ -z "$(loops_of "$BANGER_STATE_DIR")" ]
    [ "$(ledger_count)" -eq 0 ]
}

@test "snap create: 20 parallel creates on different VMs through one helper all succeed" {
    xfs_state
    make_image base
    start_helper
    local i pids=()
    for i in $(seq 1 20); do banger-vm new "p$i" --image base >/dev/null; done
    for i in $(seq 1 20); do
        banger-snap create "p$i" >"$BATS_TEST_TMPDIR/out.$i" 2>"$BATS_TEST_TMPDIR/err.$i" &
        pids+=($!)
    done
    local failed=0
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed=$((failed + 1)); done
    cat "$BATS_TEST_TMPDIR"/err.* >&2
    [ "$failed" -eq 0 ]
    [ "$(ledger_count)" -eq 20 ]
    for i in $(seq 1 20); do
        [ "$(guest_cat "$BANGER_STATE_DIR/vms/p$i/disk.ext4" /etc/hostname)" = "p$i" ]
    done
    [ "$(banger-snap list | jq -s 'length')" -eq 20 ]
}

@test "snap create: bad inputs give clear errors" {
    make_image base
    # An image removed after the VM was made (banger-vm new refuses a missing one).
    stub_image nope
    banger-vm new a --image nope >/dev/null
    rm -r "$BANGER_STATE_DIR/images/nope"
    run banger-snap create a
    assert_failure 1
    assert_output --partial 'no image named "nope"'
    # Unknown VM by name.
    run banger-snap create ghost
    assert_failure 1
    assert_output --partial 'no VM named "ghost"'
    # A second create with a stale record on stdin (e.g. from a step killed before it saved)
    # works on the stored record: same disk, same host keys, no new one made.
    banger-vm new b --image base >"$BATS_TEST_TMPDIR/b.rec"
    first=$(banger-snap create <"$BATS_TEST_TMPDIR/b.rec" 2>/dev/null)
    ino=$(stat -c %i "$BANGER_STATE_DIR/vms/b/disk.ext4")
    run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/b.rec"
    assert_success
    [ "$(echo "$output" | jq -c .snap.host_keys)" = "$(echo "$first" | jq -c .snap.host_keys)" ]
    [ "$(stat -c %i "$BANGER_STATE_DIR/vms/b/disk.ext4")" = "$ino" ]
    # A stored record without the snap section of a disk the ledger holds (the save was
    # lost) adopts the complete disk: same disk, same host keys.
    jq -c 'del(.snap)' "$BANGER_STATE_DIR/vms/b/vm.json" >"$BATS_TEST_TMPDIR/b.json"
    cp "$BATS_TEST_TMPDIR/b.json" "$BANGER_STATE_DIR/vms/b/vm.json"
    run --separate-stderr banger-snap create b
    assert_success
    [ "$(echo "$output" | jq -c .snap.host_keys)" = "$(echo "$first" | jq -c .snap.host_keys)" ]
    [ "$(stat -c %i "$BANGER_STATE_DIR/vms/b/disk.ext4")" = "$ino" ]
    # A create for another image on a VM that has a disk is a conflict.
    jq -c '.spec.image = "other" | del(.snap)' "$BANGER_STATE_DIR/vms/b/vm.json" >"$BATS_TEST_TMPDIR/b.json"
    cp "$BATS_TEST_TMPDIR/b.json" "$BANGER_STATE_DIR/vms/b/vm.json"
    make_image other
    run banger-snap create b
    assert_failure 1
    assert_output --partial 'VM "b" already has a disk'
    assert_output --partial "banger-snap rm b"
    echo "$first" >"$BANGER_STATE_DIR/vms/b/vm.json"
    # ...while re-running on the saved record is idempotent.
    run --separate-stderr banger-snap create b
    assert_success
    [ "$(ledger_count b)" -eq 1 ]
    # The helper refuses traversal, long names, symlink tricks and unknown fields.
    start_helper
    run helper_call '{"op":"snap.create","args":{"vm":"../../etc","image":"base"}}'
    echo "$output" | jq -e '.error.code == "invalid_name"'
    run helper_call '{"op":"snap.create","args":{"vm":"a","image":"../base"}}'
    echo "$output" | jq -e '.error.code == "invalid_name"'
    run helper_call "{\"op\":\"snap.create\",\"args\":{\"vm\":\"$(printf 'a%.0s' $(seq 1 33))\",\"image\":\"base\"}}"
    echo "$output" | jq -e '.error.code == "invalid_name"'
    run helper_call '{"op":"snap.create","args":{"vm":"a","image":"base","path":"/etc/shadow"}}'
    echo "$output" | jq -e '.error.code == "invalid_args"'
    mkdir -p "$BATS_TEST_TMPDIR/outside"
    ln -s "$BATS_TEST_TMPDIR/outside" "$BANGER_STATE_DIR/vms/evil"
    run helper_call '{"op":"snap.create","args":{"vm":"evil","image":"base"}}'
    echo "$output" | jq -e '.error.code == "invalid_path"'
    [ -z "$(ls -A "$BATS_TEST_TMPDIR/outside")" ]
    ln -s "$BANGER_STATE_DIR/images/base" "$BANGER_STATE_DIR/images/alias"
    run helper_call '{"op":"snap.create","args":{"vm":"a","image":"alias"}}'
    echo "$output" | jq -e '.error.code == "invalid_path"'
    # Removing another VM's disk is only ever by that VM's ledger entries.
    # (a has nothing in the ledger: nothing is removed, and that is not an error.)
    run helper_call '{"op":"snap.remove","args":{"vm":"a"}}'
    echo "$output" | jq -e '.ok == true and (.result.removed | length) == 0'
    [ -e "$BANGER_STATE_DIR/vms/b/disk.ext4" ]
    # Usage errors exit 2.
    run banger-snap create --method zfs a
    assert_failure 2
    run banger-snap create --bogus
    assert_failure 2
    run banger-snap frobnicate
    assert_failure 2
}

@test "snap list: disks with method, size, size on disk and image; rm is idempotent" {
    make_image base 32M
    banger-vm new a --image base >/dev/null
    banger-snap create a >/dev/null 2>&1
    run banger-snap list
    assert_success
    echo "$output" | jq -e '.type == "disk" and .name == "a" and .method == "copy" and .image == "base"'
    echo "$output" | jq -e '.size_bytes == 33554432 and .disk_bytes < .size_bytes and .exists == true'
    run banger-snap list --table
    assert_line --index 0 --regexp '^NAME +METHOD +IMAGE +SIZE +ON-DISK +PATH$'
    assert_line --index 1 --regexp '^a +copy +base +32.0M '
    banger-snap rm a >/dev/null
    run banger-snap list
    assert_output ""
    # Idempotent: nothing left to remove is success (item 4 of issue 10: `banger rm` of a VM
    # that never got a disk must not need --force).
    run --separate-stderr banger-snap rm a
    assert_success
    echo "$output" | jq -e 'has("snap") | not'
    banger-vm new c --image base >/dev/null
    run --separate-stderr banger-snap rm c
    assert_success
}

# vm_with_net NAME IP: a VM record with the net section banger-net up would have saved.
vm_with_net() {
    banger-vm new "$1" --image base |
        jq -c --arg ip "$2" '.net = {"ip": ($ip + "/24"), "gateway": "10.200.0.1", "dns": ["10.200.0.1"], "mac": "06:00:0a:c8:00:07", "tap": "bgr-x"}' >"$BATS_TEST_TMPDIR/$1.rec"
    cp "$BATS_TEST_TMPDIR/$1.rec" "$BANGER_STATE_DIR/vms/$1/vm.json"
}

@test "snap create: an image prepared at import takes a new VM's identity in its slots, no debugfs: the same files padded with newlines, host keys that load, a clean filesystem (issue 14)" {
    make_image base
    vm_with_net a 10.200.0.7
    BANGER_TIMING=1 run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/a.rec"
    assert_success
    [[ "$stderr" == *"slots "* ]]
    [[ "$stderr" != *debugfs* ]]
    local disk="$BANGER_STATE_DIR/vms/a/disk.ext4"
    e2fsck -fn "$disk"
    [ "$(guest_cat "$disk" /etc/hostname)" = a ]
    [ "$(guest_cat "$disk" /etc/hostname | wc -c)" -eq 256 ]
    guest_cat "$disk" /etc/hosts | grep -q $'127.0.1.1\ta'
    guest_cat "$disk" /etc/banger/net.json | jq -e '.ip == "10.200.0.7"'
    guest_cat "$disk" /etc/banger/net.env | grep -qx 'BANGER_IP=10.200.0.7'
    guest_cat "$disk" /etc/systemd/network/10-banger.network | grep -qx 'Address=10.200.0.7/24'
    guest_cat "$disk" /etc/resolv.conf | grep -qx 'nameserver 10.200.0.1'
    [ "$(guest_cat "$disk" /root/.ssh/authorized_keys)" = "$(jq -r .spec.ssh_pubkey "$BANGER_STATE_DIR/vms/a/vm.json")" ]
    debugfs -R "stat /etc/ssh/ssh_host_ed25519_key" "$disk" 2>/dev/null | grep -q "Mode:  0600"
    [ "$(guest_cat "$disk" /etc/ssh/ssh_host_ed25519_key.pub)" = "$(echo "$output" | jq -r .snap.host_keys.ed25519)" ]
    # The private keys, newlines after them and all, load (what sshd does with them).
    if command -v ssh-keygen >/dev/null; then
        local t
        for t in ed25519 ecdsa; do
            guest_cat "$disk" "/etc/ssh/ssh_host_${t}_key" >"$BATS_TEST_TMPDIR/k"
            chmod 600 "$BATS_TEST_TMPDIR/k"
            [ "$(ssh-keygen -y -f "$BATS_TEST_TMPDIR/k" | cut -d' ' -f1,2)" = "$(echo "$output" | jq -r ".snap.host_keys.$t" | cut -d' ' -f1,2)" ]
        done
    fi
}

@test "snap create: identity slots that do not serve (a map pointing elsewhere, none, no network asked for, a grown disk) leave it to debugfs; nothing else is touched and no placeholder stays (issue 14)" {
    make_image base
    local img="$BANGER_STATE_DIR/images/base" bs motd
    bs=$(jq .block "$img/slots.json")
    cp "$img/slots.json" "$BATS_TEST_TMPDIR/slots.good"
    # The hostname's slot pointed at /etc/motd's block: its marker is not there.
    motd=$(debugfs -R "blocks /etc/motd" "$img/rootfs.ext4" 2>/dev/null | awk '{ print $1 }')
    jq --argjson off "$((motd * bs))" --argjson bs "$bs" \
        '(.slots[] | select(.path == "/etc/hostname") | .extents) = [[$off, $bs]]' \
        "$BATS_TEST_TMPDIR/slots.good" >"$img/slots.json"
    vm_with_net a 10.200.0.7
    BANGER_TIMING=1 run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/a.rec"
    assert_success
    [[ "$stderr" == *debugfs* ]]
    local disk="$BANGER_STATE_DIR/vms/a/disk.ext4"
    [ "$(guest_cat "$disk" /etc/hostname)" = a ]
    [ "$(guest_cat "$disk" /etc/motd)" = "a banger test image" ]
    e2fsck -fn "$disk"
    # No map at all.
    rm "$img/slots.json"
    vm_with_net b 10.200.0.8
    BANGER_TIMING=1 run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/b.rec"
    assert_success
    [[ "$stderr" == *debugfs* ]]
    disk="$BANGER_STATE_DIR/vms/b/disk.ext4"
    guest_cat "$disk" /etc/banger/net.env | grep -qx 'BANGER_IP=10.200.0.8'
    e2fsck -fn "$disk"
    # No network asked for: its slots are removed, not left holding placeholders.
    cp "$BATS_TEST_TMPDIR/slots.good" "$img/slots.json"
    banger-vm new c --image base >/dev/null
    BANGER_TIMING=1 run --separate-stderr banger-snap create c
    assert_success
    [[ "$stderr" == *debugfs* ]]
    disk="$BANGER_STATE_DIR/vms/c/disk.ext4"
    [ "$(guest_cat "$disk" /etc/hostname)" = c ]
    run debugfs -R "stat /etc/banger/net.json" "$disk"
    assert_output --partial "File not found"
    run debugfs -R "stat /etc/resolv.conf" "$disk"
    assert_output --partial "File not found"
    e2fsck -fn "$disk"
    # A grown disk (resize2fs may move blocks): debugfs after the resize.
    vm_with_net d 10.200.0.9
    BANGER_TIMING=1 run --separate-stderr banger-snap create --disk-size 32M <"$BATS_TEST_TMPDIR/d.rec"
    assert_success
    [[ "$stderr" == *debugfs* ]]
    disk="$BANGER_STATE_DIR/vms/d/disk.ext4"
    [ "$(guest_cat "$disk" /etc/hostname)" = d ]
    e2fsck -fn "$disk"
    # No file of the guest holds a placeholder.
    local p
    for disk in "$BANGER_STATE_DIR"/vms/{a,b,c,d}/disk.ext4; do
        for p in $(jq -r '.slots[].path' "$BATS_TEST_TMPDIR/slots.good"); do
            if guest_cat "$disk" "$p" | grep -q '#banger-slot'; then
                echo "$disk: $p holds a placeholder" >&2
                false
            fi
        done
    done
}

@test "snap create: an image prepared with this host's guest agent: a VM asking for it has it by the slots alone; --no-agent takes it out; another agent is written by debugfs (issue 14)" {
    fake_kernel "$BATS_TEST_TMPDIR/agent.elf"
    export BANGER_AGENT="$BATS_TEST_TMPDIR/agent.elf"
    make_image base
    local img="$BANGER_STATE_DIR/images/base" disk
    jq -e --arg s "$(sha256sum "$BANGER_AGENT" | cut -d' ' -f1)" '.agent.sha256 == $s' "$img/slots.json"
    vm_with_net a 10.200.0.7
    BANGER_TIMING=1 run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/a.rec"
    assert_success
    [[ "$stderr" == *"slots "* ]]
    [[ "$stderr" != *debugfs* ]]
    echo "$output" | jq -e '.snap.agent == "init-hook"'
    disk="$BANGER_STATE_DIR/vms/a/disk.ext4"
    cmp <(guest_cat "$disk" /usr/local/sbin/banger-agent) "$BANGER_AGENT"
    guest_cat "$disk" /etc/systemd/system/banger-agent.service | grep -qx "ExecStart=/usr/local/sbin/banger-agent"
    run debugfs -R "stat /etc/systemd/system/sysinit.target.wants/banger-agent.service" "$disk"
    assert_output --partial 'Fast link dest: "../banger-agent.service"'
    # --no-agent: the image's agent, its unit and its enablement go.
    vm_with_net b 10.200.0.8
    BANGER_TIMING=1 run --separate-stderr banger-snap create --no-agent <"$BATS_TEST_TMPDIR/b.rec"
    assert_success
    [[ "$stderr" == *debugfs* ]]
    echo "$output" | jq -e '.snap.agent == "none"'
    disk="$BANGER_STATE_DIR/vms/b/disk.ext4"
    local f
    for f in /usr/local/sbin/banger-agent /etc/systemd/system/banger-agent.service /etc/systemd/system/sysinit.target.wants/banger-agent.service; do
        run debugfs -R "stat $f" "$disk"
        assert_output --partial "File not found"
    done
    [ "$(guest_cat "$disk" /etc/hostname)" = b ]
    e2fsck -fn "$disk"
    # The host's agent changed since the import: the new one is written.
    printf 'a newer build' >>"$BANGER_AGENT"
    vm_with_net c 10.200.0.9
    BANGER_TIMING=1 run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/c.rec"
    assert_success
    [[ "$stderr" == *debugfs* ]]
    disk="$BANGER_STATE_DIR/vms/c/disk.ext4"
    cmp <(guest_cat "$disk" /usr/local/sbin/banger-agent) "$BANGER_AGENT"
    e2fsck -fn "$disk"
}

@test "snap create: an image's own authorized_keys stays in its slot: a VM with the owner's key gets that key, one without keeps the image's (issue 14)" {
    local d
    d=$(mktemp -d "$BATS_TEST_TMPDIR/tree.XXXXXX")
    mkdir -p "$d/etc/ssh" "$d/root/.ssh"
    echo image >"$d/etc/hostname"
    echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImageOwnKey image@build" >"$d/root/.ssh/authorized_keys"
    mkfs.ext4 -q -F -d "$d" "$BATS_TEST_TMPDIR/own.ext4" 16M
    fake_kernel "$BATS_TEST_TMPDIR/own.vmlinux"
    banger-image import base --rootfs "$BATS_TEST_TMPDIR/own.ext4" --kernel "$BATS_TEST_TMPDIR/own.vmlinux" >/dev/null
    jq -e '.slots[] | select(.path == "/root/.ssh/authorized_keys") | .keep == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImageOwnKey image@build\n"' \
        "$BANGER_STATE_DIR/images/base/slots.json"
    vm_with_net a 10.200.0.7
    BANGER_TIMING=1 run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/a.rec"
    assert_success
    [[ "$stderr" == *"slots "* && "$stderr" != *debugfs* ]]
    [ "$(guest_cat "$BANGER_STATE_DIR/vms/a/disk.ext4" /root/.ssh/authorized_keys)" = "$(jq -r .spec.ssh_pubkey "$BANGER_STATE_DIR/vms/a/vm.json")" ]
    # No key of the owner's: the image's own, by the slots too.
    vm_with_net b 10.200.0.8
    jq -c 'del(.spec.ssh_pubkey)' "$BATS_TEST_TMPDIR/b.rec" >"$BATS_TEST_TMPDIR/b2.rec"
    cp "$BATS_TEST_TMPDIR/b2.rec" "$BANGER_STATE_DIR/vms/b/vm.json"
    BANGER_TIMING=1 run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/b2.rec"
    assert_success
    [[ "$stderr" == *"slots "* && "$stderr" != *debugfs* ]]
    [ "$(guest_cat "$BANGER_STATE_DIR/vms/b/disk.ext4" /root/.ssh/authorized_keys)" = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImageOwnKey image@build" ]
    # And by debugfs when the slots do not serve (no network): the image's own again.
    banger-vm new c --image base | jq -c 'del(.spec.ssh_pubkey)' >"$BATS_TEST_TMPDIR/c.rec"
    cp "$BATS_TEST_TMPDIR/c.rec" "$BANGER_STATE_DIR/vms/c/vm.json"
    BANGER_TIMING=1 run --separate-stderr banger-snap create <"$BATS_TEST_TMPDIR/c.rec"
    assert_success
    [[ "$stderr" == *debugfs* ]]
    [ "$(guest_cat "$BANGER_STATE_DIR/vms/c/disk.ext4" /root/.ssh/authorized_keys)" = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImageOwnKey image@build" ]
    debugfs -R "stat /root/.ssh/authorized_keys" "$BANGER_STATE_DIR/vms/c/disk.ext4" 2>/dev/null | grep -q "Mode:  0600"
    e2fsck -fn "$BANGER_STATE_DIR/vms/c/disk.ext4"
}
