#!/usr/bin/env bats
# Records never lie (issue 10): the store is the truth, bad input is refused line by line,
# damaged records are listed and removable, killed writers leave nothing a user cannot fix.
# Tests that run VMs use the Firecracker and jailer TEST STAND-INS (tests/standin, not
# Firecracker) with a real helper in a network namespace of the test's own.

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

up() {
    banger up "$1" --wait-console STANDIN_GUEST_READY --timeout 30
}

stored() {
    cat "$BANGER_STATE_DIR/vms/$1/vm.json"
}

# fc_of NAME: the pid of the live Firecracker with --id NAME, if any.
fc_of() {
    local p
    for p in $(pgrep -x firecracker || true); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qE -- "--id $1( |\$)" && echo "$p"
    done
    return 0
}

ledger_of() {
    ledger_jq -c --arg n "$1" '[.entries[] | select(.vm == $n) | .kind] | sort'
}

# raw_vm NAME [JSON]: a record written straight into the store.
raw_vm() {
    mkdir -p "$BANGER_STATE_DIR/vms/$1"
    if [ $# -ge 2 ]; then
        printf '%s\n' "$2"
    else
        jq -cn --arg n "$1" '{v: 1, type: "vm", name: $n, spec: {image: "default"}}'
    fi >"$BANGER_STATE_DIR/vms/$1/vm.json"
}

# ---------------------------------------------------------------------------------------
# The bad-input matrix: every step that reads records x every kind of bad input. Each run
# must end (no hang) with exit 1, a message naming the line or the record, and nothing
# created or changed in the store, the run dir, the jail dir or the helper's ledger.

STEPS=(
    "banger-vm status" "banger-vm start --no-wait" "banger-vm stop" "banger-vm kill"
    "banger-vm pause" "banger-vm resume" "banger-vm wait" "banger-vm rm"
    "banger-snap create" "banger-snap rm" "banger-net up" "banger-net down"
    "banger-jail launch" "banger-jail teardown"
)

snapshot() {
    find "$BANGER_STATE_DIR" "$BANGER_RUN_DIR" "$BANGER_ROOT_DIR" "$BANGER_JAIL_DIR" \
        -printf '%p %s %T@\n' 2>/dev/null | sort
}

# matrix INPUT-FILE EXPECTED-STDERR-REGEX: runs every step on the input.
matrix() {
    local input=$1 want=$2 step before after bad=()
    # alpha is a VM; copyofalpha a copy of its directory (a record naming another VM).
    raw_vm alpha
    raw_vm copyofalpha "$(cat "$BANGER_STATE_DIR/vms/alpha/vm.json")"
    # The lock files a first step on a VM makes.
    banger-vm status alpha >/dev/null
    banger-vm status copyofalpha >/dev/null 2>&1 || true
    before=$(snapshot)
    for step in "${STEPS[@]}"; do
        # shellcheck disable=SC2086  # the step is a command and its subcommand
        run --separate-stderr timeout 120 $step <"$input"
        if [ "$status" -ne 1 ]; then
            bad+=("$step: exit $status (want 1): $(head -c 300 <<<"$stderr")")
        elif ! grep -qE -- "$want" <<<"$stderr"; then
            bad+=("$step: stderr does not match /$want/: $(head -c 300 <<<"$stderr")")
        fi
        after=$(snapshot)
        if [ "$after" != "$before" ]; then
            bad+=("$step: changed the state: $(diff <(echo "$before") <(echo "$after") | head -5)")
        fi
    done
    [ ${#bad[@]} -eq 0 ] || { printf '%s\n' "${bad[@]}" >&2; false; }
}

@test "bad input x every step: empty input" {
    : >"$BATS_TEST_TMPDIR/in"
    matrix "$BATS_TEST_TMPDIR/in" 'error: no records on stdin'
}

@test "bad input x every step: binary garbage names line 1 (not UTF-8)" {
    { printf '\377\376'; head -c 65536 /dev/urandom | tr -d '\n'; printf '\n'; } >"$BATS_TEST_TMPDIR/in"
    matrix "$BATS_TEST_TMPDIR/in" 'error: line 1: not UTF-8'
}

@test "bad input x every step: a 100 MB line names line 1 and is never held whole" {
    { printf '{"v":1,"type":"vm","name":"alpha","pad":"'; head -c 100000000 /dev/zero | tr '\0' a; printf '"}\n'; } >"$BATS_TEST_TMPDIR/in"
    matrix "$BATS_TEST_TMPDIR/in" 'error: line 1: longer than 1048576 bytes'
}

@test "bad input x every step: wrong types name their lines" {
    {
        echo '{"v":"1","type":"vm","name":"alpha"}'
        echo '{"v":1,"type":["vm"],"name":"alpha"}'
        echo '{"v":1,"type":"vm","name":5}'
        echo '{"v":1,"type":"vm","name":null}'
        echo '[{"v":1,"type":"vm","name":"alpha"}]'
    } >"$BATS_TEST_TMPDIR/in"
    matrix "$BATS_TEST_TMPDIR/in" 'line 1: "v" is a string'
    matrix "$BATS_TEST_TMPDIR/in" 'line 2: "type" is an array'
    matrix "$BATS_TEST_TMPDIR/in" 'line 3: "name" is a number'
    matrix "$BATS_TEST_TMPDIR/in" 'line 4: "name" is null'
    matrix "$BATS_TEST_TMPDIR/in" 'line 5: expected a JSON object'
}

@test "bad input x every step: an unknown record version names the line" {
    echo '{"v":2,"type":"vm","name":"alpha"}' >"$BATS_TEST_TMPDIR/in"
    matrix "$BATS_TEST_TMPDIR/in" 'line 1: unsupported record version'
}

@test "bad input x every step: duplicate keys are an error, never a pick (item 2, 7)" {
    echo '{"v":1,"type":"vm","name":"copyofalpha","name":"alpha"}' >"$BATS_TEST_TMPDIR/in"
    matrix "$BATS_TEST_TMPDIR/in" 'line 1: the key "name" appears twice'
    echo '{"v":1,"type":"vm","name":"alpha","spec":{"image":"a","image":"b"}}' >"$BATS_TEST_TMPDIR/in"
    matrix "$BATS_TEST_TMPDIR/in" 'line 1: the key "spec.image" appears twice'
}

@test "bad input x every step: a stored record naming another VM is refused by name (item 1)" {
    echo '{"v":1,"type":"vm","name":"copyofalpha"}' >"$BATS_TEST_TMPDIR/in"
    matrix "$BATS_TEST_TMPDIR/in" 'copyofalpha.*names the VM "alpha", not "copyofalpha"'
}

@test "bad input x every step: 10,000 records of VMs that do not exist create nothing (item 8)" {
    seq 1 10000 | awk '{ printf "{\"v\":1,\"type\":\"vm\",\"name\":\"ghost%d\"}\n", $1 }' >"$BATS_TEST_TMPDIR/in"
    matrix "$BATS_TEST_TMPDIR/in" 'ghost10000.*no VM named|no VM named "ghost10000"'
    # Every record is answered, each with its error.
    run --separate-stderr banger-net up <"$BATS_TEST_TMPDIR/in"
    assert_failure 1
    [ "$(echo "$output" | jq -s '[.[] | select(.error.code == "not_found")] | length')" -eq 10000 ]
    [ "$(ls "$BANGER_STATE_DIR/vms")" = "$(printf 'alpha\ncopyofalpha')" ]
}

# ---------------------------------------------------------------------------------------
# The numbered items of issue 10.

@test "item 1 (stand-in firecracker): a copied VM directory does not stop or remove the VM it names" {
    up alpha >/dev/null 2>&1
    local pid disk
    pid=$(fc_of alpha)
    [ -n "$pid" ]
    disk=$(stored alpha | jq -r .snap.path)
    mkdir "$BANGER_STATE_DIR/vms/copyofalpha"
    cp "$BANGER_STATE_DIR/vms/alpha/vm.json" "$BANGER_STATE_DIR/vms/copyofalpha/"
    run --separate-stderr banger down copyofalpha --timeout 1
    assert_failure 1
    [[ "$stderr" == *'names the VM "alpha", not "copyofalpha"'* ]]
    run --separate-stderr banger rm --yes copyofalpha
    assert_failure 1
    [ "$(fc_of alpha)" = "$pid" ]
    [ -f "$disk" ]
    stored alpha | jq -e '.jail != null and .net != null and .snap != null'
    # --force removes the copy, by the copy's name only: alpha runs on.
    run --separate-stderr banger rm --yes --force copyofalpha
    assert_success
    [ ! -e "$BANGER_STATE_DIR/vms/copyofalpha" ]
    [ "$(fc_of alpha)" = "$pid" ]
    [ -f "$disk" ]
    run ledger_of alpha
    assert_output '["addr","disk","jail","tap"]'
}

@test "item 2 (stand-in firecracker): a bare record on stdin names the VM; the step acts on the stored record and keeps its sections" {
    up beta >/dev/null 2>&1
    [ -n "$(fc_of beta)" ]
    run --separate-stderr bash -c "printf '{\"v\":1,\"type\":\"vm\",\"name\":\"beta\"}\n' | banger-vm stop --timeout 1"
    assert_success
    # The record says stopped and it is: no Firecracker runs on under it.
    [ -z "$(fc_of beta)" ]
    stored beta | jq -e '.vm.state == "stopped" and .spec != null and .snap != null and .net != null and .jail != null'
    echo "$output" | jq -e '.vm.state == "stopped" and .jail != null'
    # Sections on stdin never overwrite the store's; unknown fields pass through unsaved.
    run --separate-stderr bash -c "printf '{\"v\":1,\"type\":\"vm\",\"name\":\"beta\",\"spec\":{\"image\":\"evil\"},\"jail\":null,\"note\":\"mine\"}\n' | banger-jail teardown"
    assert_success
    echo "$output" | jq -e '.spec.image == "default" and .note == "mine" and .jail == null'
    stored beta | jq -e '.spec.image == "default" and (has("note") | not) and (has("jail") | not) and .net != null'
}

@test "item 3: banger-vm rm < /tmp ends with one error" {
    # At most 64 KiB of stderr is kept: an endless stream of errors ends at a broken pipe.
    run bash -c 'timeout 10 banger-vm rm </tmp 2> >(head -c 65536 >"$1/err")' _ "$BATS_TEST_TMPDIR"
    assert_failure 1
    [ "$(wc -l <"$BATS_TEST_TMPDIR/err")" -le 3 ]
    grep -q "cannot read records from stdin" "$BATS_TEST_TMPDIR/err"
}

@test "item 4: banger rm of a VM that never got a disk needs no --force" {
    banger-vm new nodisk --image default >/dev/null
    run --separate-stderr banger rm --yes nodisk
    assert_success
    [ ! -e "$BANGER_STATE_DIR/vms/nodisk" ]
}

@test "item 8: banger-net up allocates nothing for VMs banger-vm new never made" {
    seq 1 300 | awk '{ printf "{\"v\":1,\"type\":\"vm\",\"name\":\"nobody%d\"}\n", $1 }' >"$BATS_TEST_TMPDIR/in"
    run --separate-stderr banger-net up <"$BATS_TEST_TMPDIR/in"
    assert_failure 1
    [ -z "$(ip -n "$NS_H" -o link show type tun)" ]
    [ ! -e "$BANGER_STATE_DIR/vms" ] || [ -z "$(ls "$BANGER_STATE_DIR/vms")" ]
    [ ! -f "$BANGER_ROOT_DIR/ledger.json" ] || [ "$(ledger_jq '.entries | length')" -eq 0 ]
}

@test "item 11 (stand-in firecracker): a damaged record is listed as damaged, and banger rm --force releases what the ledger holds" {
    up good >/dev/null 2>&1
    up bad >/dev/null 2>&1
    local tap
    tap=$(stored bad | jq -r .net.tap)
    printf '{"v":1,"type":"vm",' >"$BANGER_STATE_DIR/vms/bad/vm.json"
    run --separate-stderr banger-vm list
    assert_failure 1
    echo "$output" | jq -s -e 'map(.name) == ["bad", "good"]'
    echo "$output" | jq -s -e '.[0].error.code == "damaged" and (.[1] | has("error") | not)'
    [[ "$stderr" == *"banger rm --force bad"* ]]
    run banger-vm list --table
    assert_line --regexp '^bad +damaged'
    assert_line --regexp '^good +running'
    # Plain rm refuses and says what to run.
    run --separate-stderr banger rm --yes bad
    assert_failure
    [[ "$stderr" == *"--force"* ]]
    run --separate-stderr banger rm --yes --force bad
    assert_success
    [ -z "$(fc_of bad)" ]
    run ip -n "$NS_H" link show "$tap"
    assert_failure
    run ledger_of bad
    assert_output '[]'
    [ ! -e "$BANGER_STATE_DIR/vms/bad" ]
    [ -n "$(fc_of good)" ]
}

@test "item 11 (stand-in firecracker): a missing record (vm.json gone, or the whole directory) is released by banger rm --force" {
    up gone1 >/dev/null 2>&1
    up gone2 >/dev/null 2>&1
    rm "$BANGER_STATE_DIR/vms/gone1/vm.json"
    run --separate-stderr banger-vm list
    assert_failure 1
    echo "$output" | jq -s -e 'map(select(.name == "gone1"))[0].error.code == "damaged"'
    rm -r "$BANGER_STATE_DIR/vms/gone2"
    run --separate-stderr banger rm --yes --force gone1 gone2
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
    [[ "$stderr" == *"gone2: it has no record, but the ledger holds"* ]]
    for n in gone1 gone2; do
        [ -z "$(fc_of "$n")" ]
        run ledger_of "$n"
        assert_output '[]'
        [ ! -e "$BANGER_STATE_DIR/vms/$n" ]
    done
    [ -z "$(ip -n "$NS_H" -o link show type tun)" ]
    # A name neither the store nor the ledger knows is still an error.
    run --separate-stderr banger-vm rm --force nosuchvm
    assert_failure 1
    [[ "$stderr" == *'no VM named "nosuchvm"'* ]]
}

@test "item 12: a save that fails on a full state filesystem says the work is done and to rerun; rerunning fixes the record" {
    local small="$P_TMP/small"
    mkdir -p "$small"
    run --separate-stderr unshare -m --propagation private bash -c '
        set -e
        mount -t tmpfs -o size=128k tmpfs "$1"
        export BANGER_STATE_DIR="$1"
        mkdir -p "$1/vms/f"
        printf "{\"v\":1,\"type\":\"vm\",\"name\":\"f\",\"vm\":{\"state\":\"paused\"}}\n" >"$1/vms/f/vm.json"
        banger-vm status f >/dev/null
        dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null || true
        if banger-vm kill f >/dev/null; then echo "kill did not fail"; exit 3; fi
        jq -e ".vm.state == \"paused\"" "$1/vms/f/vm.json" >/dev/null
        [ -z "$(ls -A "$1/vms/f" | grep tmp)" ]
        rm "$1/fill"
        banger-vm kill f >/dev/null
        jq -e ".vm.state == \"stopped\"" "$1/vms/f/vm.json" >/dev/null
    ' _ "$small"
    [ "$status" -eq 0 ] || { echo "$output / $stderr" >&2; false; }
    [[ "$stderr" == *"the kill step's work is done, but the record could not be saved"* ]]
    [[ "$stderr" == *"run the step again once the state store is writable"* ]]
}

@test "item 13 (stand-in firecracker): banger-net up gives back the address and tap it made when a later part fails" {
    banger-vm new n13 --image default | banger-snap create | banger-jail launch >/dev/null 2>&1
    stored n13 | jq -e '.jail != null and (has("net") | not)'
    # The VM is launched: writing its network config into the disk is refused.
    run --separate-stderr banger-net up n13
    assert_failure 1
    [[ "$stderr" == *"is launched"* ]]
    stored n13 | jq -e 'has("net") | not'
    run ledger_of n13
    assert_output '["disk","jail"]'
    [ -z "$(ip -n "$NS_H" -o link show type tun)" ]
}

@test "item 14: the next writer removes temp files of killed writers; a VM dir with only one is listed and recreatable; lock files go with their VM" {
    local dead
    dead=$(bash -c 'echo $$')
    raw_vm t14
    : >"$BANGER_STATE_DIR/vms/t14/.vm.json.tmp.$dead.0"
    # A writer of the record cleans up.
    banger-vm kill t14 >/dev/null
    [ ! -e "$BANGER_STATE_DIR/vms/t14/.vm.json.tmp.$dead.0" ]
    # The ledger's next writer (the helper) too.
    helper_call '{"op":"ping"}' >/dev/null
    mkdir -p "$BANGER_ROOT_DIR"
    head -c 85000 /dev/zero >"$BANGER_ROOT_DIR/.ledger.json.tmp.$dead.7"
    banger-vm new t14b --image default | banger-snap create >/dev/null 2>&1
    [ ! -e "$BANGER_ROOT_DIR/.ledger.json.tmp.$dead.7" ]
    # A VM dir holding only a killed `new`'s temp file: listed as damaged, made again cleanly.
    mkdir -p "$BANGER_STATE_DIR/vms/t14c"
    : >"$BANGER_STATE_DIR/vms/t14c/.vm.json.tmp.$dead.0"
    run --separate-stderr banger-vm list
    assert_failure 1
    echo "$output" | jq -s -e 'map(select(.name == "t14c"))[0].error.code == "damaged"'
    [[ "$stderr" == *"unfinished write"* ]]
    run --separate-stderr banger-vm new t14c --image default
    assert_success
    [ "$(ls -A "$BANGER_STATE_DIR/vms/t14c")" = vm.json ]
    # Lock files: none for a name that is no VM, none left after rm.
    run banger-vm status nosuch
    assert_failure
    [ ! -e "$BANGER_STATE_DIR/locks/nosuch.lock" ]
    [ -e "$BANGER_STATE_DIR/locks/t14.lock" ]
    banger-vm rm t14 >/dev/null
    [ ! -e "$BANGER_STATE_DIR/locks/t14.lock" ]
}
