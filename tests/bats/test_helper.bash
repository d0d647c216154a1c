# shellcheck shell=bash disable=SC2034  # variables here are used by the .bats files that load this
# Common setup for banger's bats tests. Load with: load test_helper
#
# Every test gets its own state, run, config and root dirs under $BATS_TEST_TMPDIR and,
# with `start_helper`, its own banger-helper process on a temp socket. Everything a test
# starts is ended by PID in teardown; everything it creates lives under its temp dirs or
# in network/mount namespaces it made itself.

REPO="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
BIN="${BANGER_TEST_BIN:-$REPO/target/debug}"
load "$REPO/tests/node_modules/bats-support/load"
load "$REPO/tests/node_modules/bats-assert/load"

# The Firecracker and jailer TEST STAND-INS built from tests/standin (not Firecracker). They
# are built as firecracker-standin and jailer-standin, so no PATH ever offers them as the real
# thing; the tests use them through hard links with the real names (the name is the process's
# comm and, canonicalized, the file name the jailer copies) in a directory never on PATH.
STANDIN_DIR="$BIN/standin"
mkdir -p "$STANDIN_DIR"
# Made as root in the user's build dir (make test runs the tests through sudo): the user's,
# so `cargo clean` can remove it.
[ "$(id -u)" -ne 0 ] || chown --reference="$BIN" "$STANDIN_DIR" 2>/dev/null || true
ln -f "$BIN/firecracker-standin" "$STANDIN_DIR/firecracker"
ln -f "$BIN/jailer-standin" "$STANDIN_DIR/jailer"
STANDIN_FIRECRACKER="$STANDIN_DIR/firecracker"
STANDIN_JAILER="$STANDIN_DIR/jailer"

banger_env() {
    export PATH="$BIN:$PATH"
    export BANGER_STATE_DIR="$BATS_TEST_TMPDIR/state"
    export BANGER_RUN_DIR="$BATS_TEST_TMPDIR/run"
    export BANGER_CONFIG_DIR="$BATS_TEST_TMPDIR/etc"
    export BANGER_ROOT_DIR="$BATS_TEST_TMPDIR/root"
    export BANGER_JAIL_DIR="$BATS_TEST_TMPDIR/jail"
    # The socket dir must be reachable by the other uids some tests use, and
    # BATS_TEST_TMPDIR's parents are private: use a world-traversable dir of our own.
    HELPER_DIR="$(mktemp -d /tmp/banger-bats.XXXXXX)"
    chmod 0755 "$HELPER_DIR"
    export BANGER_HELPER_SOCKET="$HELPER_DIR/helper.sock"
    mkdir -p "$BANGER_STATE_DIR" "$BANGER_RUN_DIR" "$BANGER_CONFIG_DIR"
    unset BANGER_OWNER_UID BANGER_OWNER_GID BANGER_SUBNET BANGER_BRIDGE
    unset BANGER_FIRECRACKER BANGER_JAILER BANGER_BOOT_ARGS_EXTRA BANGER_AGENT
    HELPER_PID=""
}

# ledger_jq JQ-ARGS...: jq over the helper's ledger, its snapshot with the journal applied
# (banger-helper --print-ledger: ledger.json alone is not the whole ledger). Returns 2 when the
# ledger cannot be read, so that a negated check never passes on a read error.
ledger_jq() {
    local doc
    doc=$(banger-helper --print-ledger) || { echo "ledger_jq: cannot read the ledger" >&2; return 2; }
    jq "$@" <<<"$doc"
}

# start_helper [banger-helper flags...]: a helper on this test's socket; waits until it answers.
start_helper() {
    # One helper per test: one this test started before (in setup) is stopped first, or it
    # would answer the wait below and outlive the test.
    stop_helper
    banger-helper --socket "$BANGER_HELPER_SOCKET" "$@" 2>>"$BATS_TEST_TMPDIR/helper.log" &
    HELPER_PID=$!
    local _
    for _ in $(seq 1 200); do
        helper_answers && return 0
        kill -0 "$HELPER_PID" 2>/dev/null || { cat "$BATS_TEST_TMPDIR/helper.log" >&2; return 1; }
        sleep 0.02
    done
    echo "helper did not come up" >&2
    return 1
}

stop_helper() {
    if [ -n "${HELPER_PID:-}" ]; then
        kill "$HELPER_PID" 2>/dev/null || true
        wait "$HELPER_PID" 2>/dev/null || true
        HELPER_PID=""
    fi
}

# helper_answers: true when a helper answers a ping on this test's socket. The name appears at
# bind(), before listen(): a wait for the name alone can be refused after it.
helper_answers() {
    [ -S "$BANGER_HELPER_SOCKET" ] && helper_call '{"op":"ping"}' 2>/dev/null | grep -q '"ok":true'
}

# helper_call JSON [socket]: one request line, prints the answer line.
helper_call() {
    printf '%s\n' "$1" | socat -t 10 - "UNIX-CONNECT:${2:-$BANGER_HELPER_SOCKET}"
}

# stub_image NAME...: an image banger-vm new accepts (image.json only: no disk, no kernel),
# for tests of records that never boot.
stub_image() {
    local n
    for n in "$@"; do
        mkdir -p "$BANGER_STATE_DIR/images/$n"
        printf '{"v":1,"type":"image","name":"%s","stub":true}\n' "$n" >"$BANGER_STATE_DIR/images/$n/image.json"
    done
}

banger_teardown() {
    stop_helper
    [ -n "${HELPER_DIR:-}" ] && rm -rf "$HELPER_DIR"
    return 0
}

require_root() {
    [ "$(id -u)" -eq 0 ] || skip "needs root (run the suite as root, as CI does)"
}

# An unused uid/gid for "another user" tests; setpriv needs no passwd entry.
OTHER_UID=4242
OWNER_UID=4343

# as_uid UID CMD...: runs CMD as UID (no passwd entry needed), keeping the environment.
as_uid() {
    local uid=$1
    shift
    setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "$@"
}
