#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
# Warm start (issue 16): `banger-image warm` keeps an image's booted snapshot, and `banger up`
# starts new VMs from it. With the Firecracker and jailer TEST STAND-INS (tests/standin, not
# Firecracker): the stand-in's snapshots are JSON, and its guest's agent is banger's agent
# library serving inside the stand-in (`standin.agent=builtin`), whose "guest" is the
# directory `standin-guest` in the jail: the identity a clone gets is read there.

bats_require_minimum_version 1.5.0

load test_helper
load net_helper
load pipeline_helper
load snap_helper

setup() {
    pipeline_env
    export BANGER_FIRECRACKER="$STANDIN_FIRECRACKER" BANGER_JAILER="$STANDIN_JAILER"
    fake_kernel "$BATS_TEST_TMPDIR/agent.elf"
    export BANGER_AGENT="$BATS_TEST_TMPDIR/agent.elf"
    export BANGER_BOOT_ARGS_EXTRA="standin.agent=builtin"
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    make_image default
    chmod -R a+rX "$BANGER_STATE_DIR"
    WARM="$BANGER_STATE_DIR/images/default/warm"
}

teardown() {
    pipeline_teardown
}

rec() {
    banger-vm status "$1"
}

guest_of() {
    echo "$(rec "$1" | jq -r .jail.chroot)/standin-guest"
}

warm_up() {
    run --separate-stderr banger-image warm default --timeout 20 --json
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
}

@test "warm (stand-in firecracker): banger-image warm keeps the snapshot, memory and disk with their sha256 and the Firecracker version; list shows it; no warming VM is left" {
    warm_up
    echo "$output" | jq -e '.name == "default" and .warm.state == "fresh" and .warm.firecracker_version == "1.16.1-standin" and .warm.vcpus == 1 and .warm.mem_mib == 512'
    local f
    for f in vmstate memory disk.ext4; do
        [ -f "$WARM/$f" ]
        [ "$(jq -r --arg f "$f" '.files[$f].sha256' "$WARM/warm.json")" = "$(sha256sum "$WARM/$f" | cut -d' ' -f1)" ]
        [ "$(stat -c '%u %a' "$WARM/$f")" = "$OWNER_UID 400" ]
    done
    jq -e '.firecracker_version == "1.16.1-standin" and .agent == "init-hook"' "$WARM/warm.json"
    # The stand-in's snapshot was taken paused, of a guest that ran the agent.
    jq -e '.kind == "state" and (.config."boot-source".boot_args | contains("standin.agent=builtin"))' "$WARM/vmstate"
    [ ! -e "$BANGER_STATE_DIR/images/default/warm.partial" ]
    # The warming VM is gone, with everything made for it.
    run banger-vm list
    refute_output --partial warm-default
    run ledger_jq -e '[.entries[] | select(.vm == "warm-default")] | length == 0'
    assert_success
    run --separate-stderr banger-image list
    echo "$output" | jq -e 'select(.name == "default") | .warm.state == "fresh"'
    run banger-image list --table
    assert_output --regexp 'default +[0-9]+M +no +[a-z-]+ +fresh'
}

@test "warm (stand-in firecracker): banger up starts from the snapshot: its own tap and vsock, a CoW disk of the warm disk, and the agent gives the guest its identity" {
    warm_up
    run --separate-stderr banger up t1 --json
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
    local r g
    r=$output
    echo "$r" | jq -e '.vm.start == "warm" and .vm.ready == "agent" and (.vm.boot_ms | type) == "number" and .snap.warm.firecracker_version == "1.16.1-standin" and .snap.customized == false'
    echo "$r" | jq -e '.vm.warm.identity == ["entropy", "hostname", "authorized_keys", "host_keys", "net"]'
    # Firecracker got a load with the VM's own tap and socket, no boot.
    run cat "$(jq -r .jail.chroot <<<"$r")/run/standin-requests.jsonl"
    jq -s -e --argjson r "$r" 'map(select(.path == "/snapshot/load"))[0].body == {"snapshot_path": "/warm.vmstate", "mem_backend": {"backend_type": "File", "backend_path": "/warm.memory"}, "resume_vm": true, "network_overrides": [{"iface_id": "eth0", "host_dev_name": $r.net.tap}], "vsock_override": {"uds_path": $r.jail.vsock_uds}}' <<<"$output"
    jq -s -e 'map(select(.path == "/actions" or .path == "/boot-source")) | length == 0' <<<"$output"
    # The memory file is the image's, linked, not copied.
    [ "$(stat -c %i "$(jq -r .jail.chroot <<<"$r")/warm.memory")" = "$(stat -c %i "$WARM/memory")" ]
    # The guest got this VM's identity.
    g=$(guest_of t1)
    [ "$(cat "$g/.standin-hostname")" = t1 ]
    [ "$(cat "$g/etc/hostname")" = t1 ]
    grep -q "addr add $(jq -r .net.ip <<<"$r")/24 dev eth0" "$g/.standin-ip"
    grep -q "address $(jq -r .net.mac <<<"$r")" "$g/.standin-ip"
    [ "$(wc -l <"$g/.standin-reseeds")" -eq 1 ]
    diff <(cut -d' ' -f1,2 "$g/etc/ssh/ssh_host_ed25519_key.pub") <(jq -r .snap.host_keys.ed25519 <<<"$r" | cut -d' ' -f1,2)
    cmp "$g/root/.ssh/authorized_keys" <(jq -r .spec.ssh_pubkey <<<"$r")
    # The private host keys were handed over, and are not kept on the host.
    [ ! -e "$BANGER_STATE_DIR/vms/t1/warm-identity.json" ]
    # Down and up again: a normal boot of the VM's own disk.
    banger down t1 >/dev/null 2>&1
    run --separate-stderr banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20 --json
    assert_success
    echo "$output" | jq -e '.vm.start == "cold"'
}

@test "warm (stand-in firecracker): two clones never share a MAC, an address, host keys or entropy; --cold boots" {
    warm_up
    banger up t1 >/dev/null
    banger up t2 >/dev/null
    local g1 g2
    g1=$(guest_of t1)
    g2=$(guest_of t2)
    [ "$(rec t1 | jq -r .net.mac)" != "$(rec t2 | jq -r .net.mac)" ]
    grep -q "address $(rec t1 | jq -r .net.mac)" "$g1/.standin-ip"
    grep -q "address $(rec t2 | jq -r .net.mac)" "$g2/.standin-ip"
    run ! cmp -s "$g1/etc/ssh/ssh_host_ed25519_key" "$g2/etc/ssh/ssh_host_ed25519_key"
    [ "$(cat "$g1/.standin-reseeds")" != "$(cat "$g2/.standin-reseeds")" ]
    [ "$(rec t1 | jq -r .snap.host_keys.ed25519)" != "$(rec t2 | jq -r .snap.host_keys.ed25519)" ]
    run --separate-stderr banger up t3 --cold --wait-console STANDIN_GUEST_READY --timeout 20 --json
    assert_success
    echo "$output" | jq -e '.vm.start == "cold" and .snap.warm == null and .snap.customized == true'
}

# no_vm NAME: nothing of NAME is left: no record, no ledger entry, no VM dir.
no_vm() {
    run banger-vm status "$1"
    assert_failure
    run ledger_jq -e --arg n "$1" '[.entries[] | select(.vm == $n)] | length == 0'
    assert_success
    [ ! -e "$BANGER_STATE_DIR/vms/$1" ]
}

@test "warm (stand-in firecracker): stale artifacts (another Firecracker version) fail before anything is made, and say so" {
    warm_up
    jq '.firecracker_version = "1.15.0"' "$WARM/warm.json" >"$BATS_TEST_TMPDIR/w.json"
    cp "$BATS_TEST_TMPDIR/w.json" "$WARM/warm.json"
    run --separate-stderr banger up t1
    assert_failure
    [[ "$stderr" == *"made by Firecracker 1.15.0"*"1.16.1"*"stale"* ]]
    [[ "$stderr" == *"banger-image warm default"*"--cold"* ]]
    no_vm t1
    run --separate-stderr banger-image list
    echo "$output" | jq -e 'select(.name == "default") | .warm.state == "stale"'
    # --cold still boots.
    run --separate-stderr banger up t1 --cold --wait-console STANDIN_GUEST_READY --timeout 20
    assert_success
}

@test "warm (stand-in firecracker): a missing artifact or one whose checksum changed fails before anything is made" {
    warm_up
    chmod u+w "$WARM/memory"
    printf 'x' >>"$WARM/memory"
    run --separate-stderr banger up t1
    assert_failure
    [[ "$stderr" == *"memory does not match its checksum"* ]]
    no_vm t1
    warm_up
    rm "$WARM/disk.ext4"
    run --separate-stderr banger up t1
    assert_failure
    [[ "$stderr" == *"lacks $WARM/disk.ext4"* ]]
    no_vm t1
    # The step alone says the same.
    warm_up
    printf 'x' >>"$WARM/vmstate" 2>/dev/null || { chmod u+w "$WARM/vmstate"; printf 'x' >>"$WARM/vmstate"; }
    banger-vm new t2 --image default >/dev/null
    run --separate-stderr banger-snap create t2
    assert_failure
    [[ "$stderr" == *"vmstate does not match its checksum"* ]]
}

@test "warm (stand-in firecracker): a snapshot Firecracker cannot load ends in a clear error with the next step, and no half-made VM" {
    warm_up
    # A state file the stand-in cannot read, with a checksum that matches it.
    chmod u+w "$WARM/vmstate" "$WARM/warm.json"
    echo '{"not": "a snapshot"}' >"$WARM/vmstate"
    jq --arg s "$(sha256sum "$WARM/vmstate" | cut -d' ' -f1)" --argjson n "$(stat -c %s "$WARM/vmstate")" \
        '.files.vmstate.sha256 = $s | .files.vmstate.size = $n' "$WARM/warm.json" >"$BATS_TEST_TMPDIR/w.json"
    cp "$BATS_TEST_TMPDIR/w.json" "$WARM/warm.json"
    run --separate-stderr banger up t1
    assert_failure
    [[ "$stderr" == *"did not load image \"default\"'s warm snapshot"* ]]
    [[ "$stderr" == *"banger up t1 --cold"* ]]
    no_vm t1
    run ip netns exec "$NS_H" ip -o link show
    refute_output --partial "t1"
}

@test "warm (stand-in firecracker): banger-image rm --warm removes only the artifacts; a VM then boots cold" {
    warm_up
    run --separate-stderr banger-image rm --warm default
    assert_success
    [ ! -e "$WARM" ]
    [ -f "$BANGER_STATE_DIR/images/default/rootfs.ext4" ]
    run --separate-stderr banger-image list
    echo "$output" | jq -e 'select(.name == "default") | .warm == null'
    run --separate-stderr banger up t1 --wait-console STANDIN_GUEST_READY --timeout 20 --json
    assert_success
    echo "$output" | jq -e '.vm.start == "cold"'
}

@test "warm (stand-in firecracker): a warm image refuses the direct launcher, other machine sizes and --disk-size before anything is made" {
    warm_up
    run --separate-stderr banger up t1 --launcher direct
    assert_failure
    [[ "$stderr" == *"needs the jailer"* ]]
    run --separate-stderr banger up t1 --mem 256
    assert_failure
    [[ "$stderr" == *"512 MiB"*"--mem 512"* ]]
    run --separate-stderr banger up t1 --disk-size 1G
    assert_failure
    [[ "$stderr" == *"disk size"* ]]
    no_vm t1
}

@test "banger-image warm: usage errors exit 2; an unknown image fails clearly" {
    run banger-image warm
    assert_failure 2
    run banger-image warm a b
    assert_failure 2
    run banger-image warm default --vcpus 0
    assert_failure 2
    run --separate-stderr banger-image warm nosuch
    assert_failure 1
    [[ "$stderr" == *'no image named "nosuch"'* ]]
}

@test "warm (stand-in firecracker): a warm guest whose agent takes no identity is removed whole, with the next step" {
    # A snapshot of a guest without an agent (warmed once its console said it was up).
    export BANGER_BOOT_ARGS_EXTRA=""
    run --separate-stderr banger-image warm default --wait console:STANDIN_GUEST_READY --timeout 20 --json
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
    run --separate-stderr banger up t1 --timeout 2
    assert_failure
    [[ "$stderr" == *"did not take its identity"* ]]
    [[ "$stderr" == *"removed t1"*"banger up t1 --cold"* ]]
    no_vm t1
}

@test "warm (stand-in firecracker): a warm that fails (no agent answers) leaves no warming VM, no artifacts, and the earlier ones unchanged" {
    warm_up
    local before
    before=$(jq -r .created_at "$WARM/warm.json")
    export BANGER_BOOT_ARGS_EXTRA=""
    run --separate-stderr banger-image warm default --timeout 2
    assert_failure
    [[ "$stderr" == *"earlier warm artifacts, if any, are unchanged"* ]]
    no_vm warm-default
    [ ! -e "$BANGER_STATE_DIR/images/default/warm.partial" ]
    [ "$(jq -r .created_at "$WARM/warm.json")" = "$before" ]
}
