#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
# Chaos with the Firecracker and jailer TEST STAND-INS (tests/standin, not Firecracker):
# pipelines SIGKILLed at random points, a root helper killed -9 in the middle of parallel
# ups, `banger up` racing `banger down`, parallel ups of one name. Afterwards the records
# must match reality and `banger down` + `banger rm` must leave nothing behind. Each test
# runs in network and mount namespaces of its own with the state dir on a reflink XFS
# mounted only there (see chaos_helper.bash); steps run as the owner uid.

bats_require_minimum_version 1.5.0

load test_helper
load net_helper
load snap_helper
load chaos_helper

setup() {
    chaos_env
    chaos_helper_start
    chaos_image
}

teardown() {
    chaos_teardown
}

@test "chaos (stand-in firecracker): smoke: up, down, rm leave nothing" {
    local n="${CHAOS_TAG}-a"
    run --separate-stderr up "$n"
    assert_success
    consistent "$n"
    stored "$n" | jq -e '.snap.method == "reflink" and .vm.state == "running"'
    run --separate-stderr as_owner banger down "$n" --timeout 1
    assert_success
    consistent "$n"
    run --separate-stderr as_owner banger rm --yes "$n"
    assert_success
    nothing_left "$n"
}

# A banger-jail killed after the helper started Firecracker but before `PUT /serial` leaves a
# Firecracker the next launch adopts: it must finish the launch (console, keeper) so the guest
# becomes ready.
@test "chaos (stand-in firecracker): 30 banger ups SIGKILLed at random points come up again; down + rm leave nothing" {
    local i n victims names=() how
    for i in $(seq 1 30); do
        n="${CHAOS_TAG}-k$i"
        names+=("$n")
        up_detached "$n"
        ms_sleep 300
        victims=$(steps_of "$UP_PID")
        if [ $((RANDOM % 2)) -eq 0 ] || [ -z "$victims" ]; then
            how="the whole process group"
            kill -9 -- "-$UP_PID" 2>/dev/null || true
        else
            victims=$(shuf -n 1 <<<"$victims")
            how="$(cat /proc/"$victims"/comm 2>/dev/null || echo a step) (pid $victims)"
            kill -9 "$victims" 2>/dev/null || true
        fi
        wait "$UP_PID" 2>/dev/null || true
        run --separate-stderr up "$n"
        if [ "$status" -ne 0 ]; then
            echo "banger up $n after killing $how failed:" >&2
            echo "$stderr" >&2
            false
        fi
        consistent "$n"
    done
    run --separate-stderr as_owner banger down --timeout 1 "${names[@]}"
    assert_success
    run --separate-stderr as_owner banger rm --yes "${names[@]}"
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
    nothing_left "${names[@]}"
}

# A helper killed while banger-jail waits on jail.launch can leave a started Firecracker that
# the next launch adopts and must finish launching.
@test "chaos (stand-in firecracker): the helper killed -9 ten times during 20 parallel ups as the owner; every VM comes up again; down + rm leave nothing" {
    local i n pids=() names=()
    for i in $(seq 1 20); do
        n="${CHAOS_TAG}-h$i"
        names+=("$n")
        up "$n" >/dev/null 2>>"$BATS_TEST_TMPDIR/storm.log" &
        pids+=($!)
    done
    for i in $(seq 1 10); do
        ms_sleep 400
        kill -9 "$HELPER_PID"
        wait "$HELPER_PID" 2>/dev/null || true
        ms_sleep 100
        chaos_helper_start
    done
    for i in "${pids[@]}"; do wait "$i" 2>/dev/null || true; done
    # Every VM must come up again; all are tried, so the report shows every one that did not.
    local failed=()
    for n in "${names[@]}"; do
        run --separate-stderr up "$n"
        if [ "$status" -ne 0 ]; then
            failed+=("$n")
            echo "banger up $n after the helper storm failed:" >&2
            echo "$stderr" >&2
        elif ! consistent "$n"; then
            failed+=("$n")
        fi
    done
    run --separate-stderr as_owner banger down --timeout 1 "${names[@]}"
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; failed+=(down); }
    run --separate-stderr as_owner banger rm --yes "${names[@]}"
    [ "$status" -eq 0 ] || { echo "$stderr" >&2; failed+=(rm); }
    nothing_left "${names[@]}"
    [ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2; false; }
}

@test "chaos (stand-in firecracker): 20 rounds of banger up racing banger down; the record always matches the processes, taps and ledger" {
    local n="${CHAOS_TAG}-race" r a b
    up "$n" >/dev/null 2>&1
    for r in $(seq 1 20); do
        up "$n" >/dev/null 2>>"$BATS_TEST_TMPDIR/race.log" &
        a=$!
        ms_sleep 200
        as_owner banger down --timeout 1 "$n" >/dev/null 2>>"$BATS_TEST_TMPDIR/race.log" &
        b=$!
        wait "$a" || true
        wait "$b" || true
        consistent "$n" || { echo "after round $r" >&2; false; }
    done
    as_owner banger down --timeout 1 "$n" >/dev/null
    as_owner banger rm --yes "$n" >/dev/null
    nothing_left "$n"
}

@test "chaos (stand-in firecracker): 10 parallel banger up of one name all succeed on one VM" {
    local n="${CHAOS_TAG}-same" i pids=() nfail=0
    for i in $(seq 1 10); do
        up "$n" >/dev/null 2>>"$BATS_TEST_TMPDIR/same.log" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || nfail=$((nfail + 1)); done
    [ "$nfail" -eq 0 ] || { echo "$nfail of 10 failed:" >&2; cat "$BATS_TEST_TMPDIR/same.log" >&2; false; }
    consistent "$n"
    stored "$n" | jq -e '.vm.state == "running"'
    local fcs=0 p
    for p in $(pgrep -x firecracker || true); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qE -- "--id $n( |\$)" && fcs=$((fcs + 1))
    done
    [ "$fcs" -eq 1 ]
    [ "$(ledger_jq --arg n "$n" '[.entries[] | select(.vm == $n and (.kind == "disk" or .kind == "tap" or .kind == "jail"))] | length')" -eq 3 ]
    as_owner banger down --timeout 1 "$n" >/dev/null
    as_owner banger rm --yes "$n" >/dev/null
    nothing_left "$n"
}
