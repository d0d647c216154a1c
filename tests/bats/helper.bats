#!/usr/bin/env bats
# banger-helper as a user (and an attacker) sees it: a real helper on a temp socket.

load test_helper

setup() {
    banger_env
    require_root
    start_helper --owner "$OWNER_UID"
}

teardown() {
    banger_teardown
}

@test "helper: ping answers root with version, pid and owner" {
    run helper_call '{"op":"ping"}'
    assert_success
    assert_output --partial '"ok":true'
    assert_output --partial "\"pid\":$HELPER_PID"
    assert_output --partial "\"owner\":$OWNER_UID"
}

@test "helper: ping answers the owner uid" {
    run as_uid "$OWNER_UID" socat -t 5 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET" <<<'{"op":"ping"}'
    assert_success
    assert_output --partial '"ok":true'
    assert_output --partial "\"caller\":$OWNER_UID"
}

@test "helper: another uid is refused with permission_denied and the attempt is logged" {
    run as_uid "$OTHER_UID" socat -t 5 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET" <<<'{"op":"ping"}'
    assert_success
    assert_output --partial '"code":"permission_denied"'
    run grep "refused uid $OTHER_UID" "$BATS_TEST_TMPDIR/helper.log"
    assert_success
}

@test "helper: malformed JSON, unknown op, bad args, invalid names get clear errors" {
    run helper_call 'nope'
    assert_output --partial '"code":"bad_request"'
    run helper_call '{"op":"rm-rf"}'
    assert_output --partial '"code":"unknown_op"'
    run helper_call '{"op":"ping","args":{"cmd":"id"}}'
    assert_output --partial '"code":"invalid_args"'
    run helper_call '{"op":"ledger.list","args":{"vm":"../../etc"}}'
    assert_output --partial '"code":"invalid_name"'
    run helper_call '{"op":"ledger.list","args":{"vm":"Bad_Name"}}'
    assert_output --partial '"code":"invalid_name"'
    run helper_call '{"op":"ledger.list","args":{"vm":"a"}}'
    assert_output '{"ok":true,"result":{"entries":[]}}'
}

@test "helper: an oversized request is refused with too_large" {
    run bash -c "head -c 70000 /dev/zero | tr '\\0' 'a' | socat -t 5 - UNIX-CONNECT:$BANGER_HELPER_SOCKET"
    assert_output --partial '"code":"too_large"'
}

@test "helper: a slow client is cut off with timeout" {
    stop_helper
    start_helper --owner "$OWNER_UID" --read-timeout 1
    run bash -c "(printf '{\"op\":'; sleep 3) | socat -t 5 - UNIX-CONNECT:$BANGER_HELPER_SOCKET"
    assert_output --partial '"code":"timeout"'
}

@test "helper: survives a flood of malformed and oversized requests without leaking fds" {
    helper_call '{"op":"ping"}' >/dev/null
    local before after i
    before=$(ls /proc/"$HELPER_PID"/fd | wc -l)
    local pids=()
    for i in $(seq 1 150); do
        printf 'garbage %s\n' "$i" | socat -t 2 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET" >/dev/null &
        pids+=($!)
        head -c 70000 /dev/zero | socat -t 2 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET" >/dev/null 2>&1 &
        pids+=($!)
        printf '{"op":' | socat -t 2 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET" >/dev/null &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    kill -0 "$HELPER_PID"
    run helper_call '{"op":"ping"}'
    assert_output --partial '"ok":true'
    # Give finished connection threads a moment to close their sockets.
    for i in $(seq 1 50); do
        after=$(ls /proc/"$HELPER_PID"/fd | wc -l)
        [ "$after" -le "$before" ] && break
        sleep 0.1
    done
    [ "$after" -le "$before" ] || { echo "fds before=$before after=$after" >&2; false; }
}

@test "helper: a second helper on the same socket refuses to start" {
    run banger-helper --socket "$BANGER_HELPER_SOCKET"
    assert_failure
    assert_output --partial "already answers"
}

@test "helper: a stale socket file is replaced" {
    stop_helper
    [ -S "$BANGER_HELPER_SOCKET" ]
    start_helper --owner "$OWNER_UID"
    run helper_call '{"op":"ping"}'
    assert_output --partial '"ok":true'
}

@test "helper: systemd socket activation (LISTEN_FDS) is accepted" {
    stop_helper
    rm -f "$BANGER_HELPER_SOCKET"
    command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate not installed"
    systemd-socket-activate -l "$BANGER_HELPER_SOCKET" banger-helper 2>>"$BATS_TEST_TMPDIR/helper.log" &
    HELPER_PID=$!
    for _ in $(seq 1 100); do helper_answers && break; sleep 0.02; done
    run helper_call '{"op":"ping"}'
    assert_output --partial '"ok":true'
}

@test "helper: the ledger is root-only and survives a restart" {
    run helper_call '{"op":"ledger.list"}'
    assert_success
    [ -d "$BANGER_ROOT_DIR" ]
    [ "$(stat -c %a "$BANGER_ROOT_DIR")" = 700 ]
}

@test "helper: an update is a line of the ledger's journal; SIGTERM folds the journal into ledger.json; --print-ledger shows the whole" {
    stop_helper
    rm -f "$BANGER_HELPER_SOCKET"
    # A ledger as a helper before the journal wrote it (no gen): two mounts whose objects are gone.
    mkdir -p "$BANGER_ROOT_DIR"
    chmod 0700 "$BANGER_ROOT_DIR"
    jq -n -c '{v:1, entries:[{vm:"a",kind:"mount",id:"/nonexistent/m1",created_at:"t"},
        {vm:"a",kind:"mount",id:"/nonexistent/m2",created_at:"t"}]}' >"$BANGER_ROOT_DIR/ledger.json"
    start_helper --owner "$OWNER_UID"
    # The first update writes a snapshot with a gen; the next one is a journal line.
    for m in m1 m2; do
        run helper_call "{\"op\":\"reconcile.drop\",\"args\":{\"vm\":\"a\",\"kind\":\"mount\",\"id\":\"/nonexistent/$m\"}}"
        assert_success
        echo "$output" | jq -e '.ok'
    done
    jq -e '.gen and (.entries | length == 1)' "$BANGER_ROOT_DIR/ledger.json"
    [ "$(wc -l <"$BANGER_ROOT_DIR/ledger.journal")" -eq 2 ]
    [ "$(stat -c %a "$BANGER_ROOT_DIR/ledger.journal")" = 600 ]
    ledger_jq -e '.entries == []'
    # Stopped as systemd stops it: the journal is folded in, and it still dies of the signal.
    kill -TERM "$HELPER_PID"
    local rc=0
    wait "$HELPER_PID" || rc=$?
    [ "$rc" -eq 143 ]
    HELPER_PID=""
    [ ! -e "$BANGER_ROOT_DIR/ledger.journal" ]
    jq -e '.entries == []' "$BANGER_ROOT_DIR/ledger.json"
    # --print-ledger: usage and the whole ledger; nothing is made where there is none.
    run banger-helper --print-ledger
    assert_success
    echo "$output" | jq -e '.v == 1 and .entries == []'
    rm -rf "$BANGER_ROOT_DIR"
    run banger-helper --print-ledger
    assert_success
    assert_output '{"v":1,"entries":[]}'
    [ ! -e "$BANGER_ROOT_DIR" ]
    # A root dir the owner could write (a symlink or a FIFO planted as ledger.journal) is
    # refused, as every op refuses it: nothing is opened by name in it.
    mkdir -p "$BANGER_ROOT_DIR"
    chown "$OWNER_UID" "$BANGER_ROOT_DIR"
    mkfifo "$BANGER_ROOT_DIR/ledger.journal"
    run timeout 10 banger-helper --print-ledger
    assert_failure 1
    assert_output --partial "$BANGER_ROOT_DIR"
}

@test "banger-helper: --help, --version and usage errors" {
    run banger-helper --help
    assert_success
    assert_output --partial "--socket"
    run banger-helper --version
    assert_output --partial "banger-helper "
    run banger-helper --frobnicate
    assert_failure 2
}

@test "client: when the helper is missing, a user is told what to run (install, restart, or who owns it)" {
    stop_helper
    export BANGER_CONFIG_DIR="$HELPER_DIR/etc"
    mkdir -p "$BANGER_CONFIG_DIR"
    chmod 0755 "$BANGER_CONFIG_DIR"
    export BANGER_STATE_DIR="$HELPER_DIR/state"
    mkdir -p "$BANGER_STATE_DIR" && chmod 0777 "$BANGER_STATE_DIR"
    # The client waits this long for a helper that is restarting (5 s by default).
    export BANGER_HELPER_WAIT=0.2
    # Not installed.
    run as_uid "$OWNER_UID" banger-net list
    assert_failure 1
    assert_output --partial "run: sudo banger system install"
    # Installed for the owner, helper down.
    printf '{"owner":"alice","uid":%s,"gid":%s}\n' "$OWNER_UID" "$OWNER_UID" >"$BANGER_CONFIG_DIR/install.json"
    run as_uid "$OWNER_UID" banger-net list
    assert_failure 1
    assert_output --partial "run: sudo banger system restart"
    # Someone else.
    run as_uid "$OTHER_UID" banger-net list
    assert_failure 1
    assert_output --partial "banger is installed for alice (uid $OWNER_UID)"
    # The helper up: the owner is served, someone else is named the owner.
    start_helper --owner "$OWNER_UID"
    run as_uid "$OWNER_UID" banger-net list
    assert_success
    run as_uid "$OTHER_UID" banger-net list
    assert_failure 1
    assert_output --partial "banger is installed for alice"
}

@test "helper: a ping that answers is not logged (the client, the preflight and the doctor ping often), other ops are (issue 13)" {
    start_helper
    local i
    for i in 1 2 3 4 5; do helper_call '{"op":"ping"}' >/dev/null; done
    helper_call '{"op":"ledger.list","args":{}}' >/dev/null
    helper_call '{"op":"nope"}' >/dev/null
    run cat "$BATS_TEST_TMPDIR/helper.log"
    refute_output --partial ": ping: ok"
    assert_output --partial ": ledger.list: ok"
    assert_output --partial ": nope: unknown_op"
}
