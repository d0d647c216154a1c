#!/usr/bin/env bats
# banger-doctor: one record per check; exit 1 when a check fails.

bats_require_minimum_version 1.5.0

load test_helper

setup() {
    banger_env
    NS=""
}

teardown() {
    [ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
    banger_teardown
}

check() {
    jq -c --arg n "$1" 'select(.name == $n) | {status, message, fix}' <<<"$output"
}

@test "doctor: one v1 check record per line; the TEST STAND-IN binaries are found with their versions" {
    export BANGER_FIRECRACKER="$STANDIN_FIRECRACKER" BANGER_JAILER="$STANDIN_JAILER"
    run --separate-stderr banger-doctor
    echo "$output" | jq -e -s 'length >= 10 and all(.v == 1 and .type == "check" and (.status | IN("ok", "warn", "fail")))'
    check firecracker | jq -e '.status == "ok" and (.message | contains("standin"))'
    check jailer | jq -e '.status == "ok"'
    check tool-debugfs | jq -e '.status == "ok"'
}

@test "doctor: a missing Firecracker fails the run, with the fix" {
    export BANGER_FIRECRACKER=/nonexistent/firecracker
    run --separate-stderr banger-doctor
    assert_failure 1
    check firecracker | jq -e '.status == "fail" and (.fix | contains("BANGER_FIRECRACKER"))'
}

@test "doctor (stand-in firecracker): the helper's state is reported; --strict fails on warnings" {
    export BANGER_FIRECRACKER="$STANDIN_FIRECRACKER" BANGER_JAILER="$STANDIN_JAILER"
    run --separate-stderr banger-doctor
    check helper | jq -e '.status == "warn" and (.message | contains("sudo banger system install"))'
    start_helper
    run --separate-stderr banger-doctor
    check helper | jq -e --arg p "$HELPER_PID" '.status == "ok" and (.message | contains("pid " + $p))'
    run --separate-stderr banger-doctor --strict
    if jq -e -s 'any(.status == "warn")' <<<"$output" >/dev/null; then
        assert_failure 1
    fi
}

@test "doctor: a VM launched without the jailer is named as less isolated" {
    stub_image x
    banger-vm new a --image x >/dev/null
    banger-vm new b --image x >/dev/null
    jq '.jail = {"launcher": "direct"}' "$BANGER_STATE_DIR/vms/b/vm.json" >"$BATS_TEST_TMPDIR/b" \
        && mv "$BATS_TEST_TMPDIR/b" "$BANGER_STATE_DIR/vms/b/vm.json"
    run --separate-stderr banger-doctor
    check isolation | jq -e '.status == "warn" and (.message | endswith(": b"))'
}

@test "doctor: reflinks in the state dir, and a subnet that overlaps an address of the host" {
    require_root
    mkdir -p "$BANGER_STATE_DIR/images"
    local want=warn
    echo x >"$BATS_TEST_TMPDIR/a"
    cp --reflink=always "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b" 2>/dev/null && want=ok
    run --separate-stderr banger-doctor
    check disk-clones | jq -e --arg w "$want" '.status == $w'
    [ -z "$(ls -A "$BANGER_STATE_DIR/images")" ]
    NS="banger-doc-$$"
    ip netns add "$NS"
    ip -n "$NS" link add v0 type veth peer name v1
    ip -n "$NS" addr add 10.200.0.7/24 dev v0
    ip -n "$NS" link set v0 up
    run --separate-stderr ip netns exec "$NS" banger-doctor
    assert_failure 1
    check subnet | jq -e '.status == "fail" and (.message | contains("10.200.0.7/24 on v0"))'
    BANGER_SUBNET=10.201.0.0/24 run --separate-stderr ip netns exec "$NS" banger-doctor
    check subnet | jq -e '.status == "ok"'
}

@test "doctor: --table for people; usage errors exit 2" {
    run --separate-stderr banger-doctor --table
    assert_line --index 0 --regexp '^CHECK +STATUS +MESSAGE$'
    run banger-doctor --frob
    assert_failure 2
}
