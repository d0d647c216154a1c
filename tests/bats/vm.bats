#!/usr/bin/env bats
# banger-vm as a user runs it: records, the store, usage errors.

load test_helper

setup() {
    banger_env
    stub_image x y debian
}

teardown() {
    banger_teardown
}

@test "vm new: prints a v1 vm record with the spec section and saves it" {
    run banger-vm new a --image x --vcpus 2 --mem 1024 --disk-size 10G
    assert_success
    echo "$output" | jq -e '.v == 1 and .type == "vm" and .name == "a"'
    echo "$output" | jq -e '.spec.image == "x" and .spec.vcpus == 2 and .spec.mem_mib == 1024'
    echo "$output" | jq -e '.spec.disk_size == 10737418240'
    echo "$output" | jq -e '.spec.ssh_pubkey | startswith("ssh-ed25519 ")'
    [ -f "$BANGER_STATE_DIR/vms/a/vm.json" ]
    [ "$(wc -l <<<"$output")" -eq 1 ]
}

@test "vm new: a duplicate name says the name is taken" {
    banger-vm new a --image x >/dev/null
    run banger-vm new a --image x
    assert_failure 1
    assert_output --partial 'a VM named "a" already exists'
}

@test "vm new: bad input is a usage error or a clear error" {
    run banger-vm new a
    assert_failure 2
    assert_output --partial -- "--image IMAGE is required"
    run banger-vm new Bad_Name --image x
    assert_failure 2
    assert_output --partial "invalid VM name"
    run banger-vm new a --image x --vcpus 0
    assert_failure 2
    run banger-vm new a --image x --mem lots
    assert_failure 2
    run banger-vm new a --image x --disk-size 10Q
    assert_failure 2
    assert_output --partial "unknown unit"
    run banger-vm new a --image x --ssh-key /nonexistent.pub
    assert_failure 1
    assert_output --partial "cannot read the SSH public key /nonexistent.pub"
    echo "not a key" >"$BATS_TEST_TMPDIR/k.pub"
    run banger-vm new a --image x --ssh-key "$BATS_TEST_TMPDIR/k.pub"
    assert_failure 1
    assert_output --partial "does not look like an SSH public key"
    run banger-vm list
    assert_output ""
}

@test "vm new: --ssh-key takes the user's key and records the private key beside it" {
    ssh-keygen -q -t ed25519 -N '' -f "$BATS_TEST_TMPDIR/id" -C me
    run banger-vm new a --image x --ssh-key "$BATS_TEST_TMPDIR/id.pub"
    assert_success
    echo "$output" | jq -e --arg k "$BATS_TEST_TMPDIR/id" '.spec.ssh_key == $k and (.spec.ssh_pubkey | endswith(" me"))'
}

@test "records: a non-JSON line on stdin names line 1 and exits 1" {
    run bash -c "printf 'nope\n' | banger-vm status"
    assert_failure 1
    assert_output --partial "line 1: not valid JSON"
    run bash -c "printf '{\"v\":1}\n\n[1]\n' | banger-vm status"
    assert_failure 1
    assert_output --partial "line 3: expected a JSON object"
}

@test "records: status refreshes records from the store and keeps the pipeline going" {
    banger-vm new a --image x >/dev/null
    banger-vm new b --image y >/dev/null
    run bash -c "banger-vm list | banger-vm status | jq -r .name"
    assert_success
    assert_output $'a\nb'
    run banger-vm status a nope b
    assert_failure 1
    assert_output --partial 'no VM named "nope"'
    assert_line --index 0 --partial '"name":"a"'
}

@test "records: a record carrying error is forwarded unchanged and fails the step" {
    banger-vm new a --image x >/dev/null
    in='{"v":1,"type":"vm","name":"a","error":{"step":"net","code":"x","message":"broke"},"extra":[1,{"k":null}]}'
    run bash -c "printf '%s\n' '$in' | banger-vm status 2>/dev/null"
    assert_failure 1
    [ "$(jq -cS . <<<"$output")" = "$(jq -cS . <<<"$in")" ]
}

@test "records: unknown fields in the store pass through status and list" {
    banger-vm new a --image x >/dev/null
    rec=$(banger-vm status a | jq -c '. + {"custom": {"deep": [1, "two", {"three": 3.5}]}}')
    # A user (or another tool) annotated the stored record: status and list keep it.
    printf '%s\n' "$rec" | jq . >"$BANGER_STATE_DIR/vms/a/vm.json"
    run banger-vm status a
    assert_success
    echo "$output" | jq -e '.custom.deep[2].three == 3.5'
    run banger-vm list
    echo "$output" | jq -e '.custom.deep[1] == "two"'
}

@test "records: a closed stdout (EPIPE) exits 0 quietly" {
    for i in $(seq 1 50); do banger-vm new "v$i" --image x >/dev/null; done
    run bash -c 'set -o pipefail; banger-vm list | head -n 1 >/dev/null'
    assert_success
    assert_output ""
}

@test "vm list: JSON lines, and --table for people" {
    banger-vm new a --image debian --vcpus 2 >/dev/null
    run banger-vm list
    assert_success
    echo "$output" | jq -e '.name == "a"'
    run banger-vm list --table
    assert_line --index 0 --regexp '^NAME +STATE +IMAGE +VCPUS +MEM +IP$'
    assert_line --index 1 --regexp '^a +created +debian +2 +512M +-$'
}

@test "vm rm: removes a record without resources; refuses one that still has them" {
    banger-vm new a --image x >/dev/null
    run banger-vm rm a
    assert_success
    run banger-vm status a
    assert_failure
    banger-vm new b --image x >/dev/null
    jq '. + {"net": {"tap": "bgr-b"}}' "$BANGER_STATE_DIR/vms/b/vm.json" >"$BATS_TEST_TMPDIR/b.json"
    mv "$BATS_TEST_TMPDIR/b.json" "$BANGER_STATE_DIR/vms/b/vm.json"
    run banger-vm rm b
    assert_failure 1
    assert_output --partial "run 'banger-net down b' first"
    [ -f "$BANGER_STATE_DIR/vms/b/vm.json" ]
    run banger-vm rm nope
    assert_failure 1
    assert_output --partial 'no VM named "nope"'
}

@test "store: concurrent writers from several processes lose nothing" {
    local pids=()
    for i in $(seq 1 40); do banger-vm new "c$i" --image x >/dev/null & pids+=($!); done
    wait "${pids[@]}"
    run bash -c "banger-vm list | wc -l"
    assert_output 40
    # Forty processes racing for one name: exactly one wins.
    pids=()
    for i in $(seq 1 40); do
        (banger-vm new same --image x >/dev/null 2>&1 && echo won) >>"$BATS_TEST_TMPDIR/won" &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    [ "$(grep -c won "$BATS_TEST_TMPDIR/won")" -eq 1 ]
    run bash -c "ls -a '$BANGER_STATE_DIR'/vms/*/ | grep -c '\\.tmp\\.' || true"
    assert_output 0
}

@test "banger-vm: --help lists the commands, unknown flags and commands exit 2" {
    run banger-vm --help
    assert_success
    assert_output --partial "banger-vm new NAME"
    run banger-vm --bogus
    assert_failure 2
    run banger-vm frobnicate
    assert_failure 2
    assert_output --partial "unknown command"
    run banger-vm list --image x
    assert_failure 2
}

@test "records: every step that reads records names line 1 of a non-JSON input and exits 1" {
    local cmd
    for cmd in "banger-vm status" "banger-vm start" "banger-vm stop" "banger-vm kill" \
        "banger-vm pause" "banger-vm resume" "banger-vm wait" "banger-vm rm" \
        "banger-snap create" "banger-snap rm" "banger-net up" "banger-net down" \
        "banger-jail launch" "banger-jail teardown"; do
        run bash -c "printf 'nope\n' | $cmd"
        [ "$status" -eq 1 ] || { echo "$cmd: exit $status" >&2; false; }
        [[ "$output" == *"line 1"* ]] || { echo "$cmd: $output" >&2; false; }
    done
}

@test "vm new: an invalid name is a usage error (exit 2), named before a missing --image (issue 13)" {
    run banger-vm new 'a/b'
    assert_failure 2
    assert_output --partial 'invalid VM name "a/b"'
    refute_output --partial -- "--image"
    local sub
    for sub in status start stop rm console; do
        run banger-vm "$sub" 'Bad!'
        assert_failure 2
        assert_output --partial 'usage error: invalid VM name "Bad!"'
    done
    run banger-net up '../x'
    assert_failure 2
    [ ! -e "$BANGER_STATE_DIR/locks/../x.lock" ]
}

@test "vm new: an image that does not exist is refused and nothing is stored (issue 13, item 6)" {
    run banger-vm new t2 --image nosuchimage
    assert_failure 1
    assert_output --partial "no image named nosuchimage"
    assert_output --partial "banger image list"
    [ ! -e "$BANGER_STATE_DIR/vms/t2" ]
    run banger-vm list
    assert_output ""
    # An existing VM with --exists-ok keeps its spec: no image check for what is not made.
    banger-vm new t3 --image x >/dev/null
    rm -r "$BANGER_STATE_DIR/images/x"
    run banger-vm new t3 --image x --exists-ok
    assert_success
}

@test "vm status: a VM that never ran has a vm section saying so (issue 13); --table for people" {
    banger-vm new dev1 --image x >/dev/null
    run banger-vm status dev1
    assert_success
    echo "$output" | jq -e '.vm.state == "created" and .vm.live.pid == null and (.vm.live.checked_at | type == "string")'
    # Read-only: the stored record has no vm section.
    jq -e 'has("vm") | not' "$BANGER_STATE_DIR/vms/dev1/vm.json"
    run banger-vm status dev1 --table
    assert_success
    assert_line --index 0 --regexp '^NAME +STATE +IMAGE'
    assert_line --index 1 --regexp '^dev1 +created +x'
    run bash -c 'banger-vm status nosuch --table 2>/dev/null'
    assert_failure 1
    assert_output --regexp '^NAME +STATE'
}

@test "steps: no NAME and stdin a terminal is a usage error, not a silent wait (issue 13, item 11)" {
    command -v script >/dev/null || skip "script (util-linux) is not installed"
    local b
    for b in "banger-vm start" "banger-vm status" "banger-net up" "banger-snap create" "banger-jail launch" "banger-vm rm"; do
        run timeout 10 script -qec "$b" /dev/null
        assert_failure 2
        assert_output --partial "no VM NAME given, and stdin is a terminal"
    done
}

@test "config.json: an unknown key is named as such, not called invalid JSON (issue 13)" {
    echo '{"stat_dir": "/x"}' >"$BANGER_CONFIG_DIR/config.json"
    run banger-vm list
    assert_failure 1
    assert_output --partial 'is valid JSON, but it has the unknown key "stat_dir" (did you mean "state_dir"?)'
    refute_output --partial "not valid JSON"
    echo '{"state_dir": ' >"$BANGER_CONFIG_DIR/config.json"
    run banger-vm list
    assert_failure 1
    assert_output --partial "is not valid JSON"
}

@test "vm rm: the VM's pinned host keys (known_hosts.d/NAME) go with it (issue 13)" {
    banger-vm new a --image x >/dev/null
    banger-vm new b --image x >/dev/null
    mkdir -p "$BANGER_STATE_DIR/ssh/known_hosts.d"
    echo "a ssh-ed25519 AAAA" >"$BANGER_STATE_DIR/ssh/known_hosts.d/a"
    echo "b ssh-ed25519 BBBB" >"$BANGER_STATE_DIR/ssh/known_hosts.d/b"
    run banger-vm rm a
    assert_success
    [ ! -e "$BANGER_STATE_DIR/ssh/known_hosts.d/a" ]
    [ -e "$BANGER_STATE_DIR/ssh/known_hosts.d/b" ]
}
