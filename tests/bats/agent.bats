#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
# The guest agent as a user meets it: banger-snap writing it into a disk, banger up waiting
# on it, banger vm exec / cp / status through it. With the Firecracker TEST STAND-IN (tests/
# standin, not Firecracker) launched directly (no chroot, so it can start host programs): its
# vsock socket answers CONNECT for the agent's port by running the real banger-agent binary
# on the host (`standin.agent=PATH` on the kernel command line) as the stand-in guest. The
# stand-in guest is the host: its commands see the host's kernel and files, as the owner.

bats_require_minimum_version 1.5.0

load test_helper
load net_helper
load pipeline_helper
load snap_helper

setup() {
    pipeline_env
    export BANGER_FIRECRACKER="$STANDIN_FIRECRACKER" BANGER_JAILER="$STANDIN_JAILER"
    # The agent the helper writes into disks: any static ELF for this host passes its
    # checks; the stand-in never boots it (the stand-in guest's agent is the host build).
    fake_kernel "$BATS_TEST_TMPDIR/agent.elf"
    export BANGER_AGENT="$BATS_TEST_TMPDIR/agent.elf"
    export BANGER_BOOT_ARGS_EXTRA="standin.agent=$BIN/banger-agent"
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    make_image default
    chmod -R a+rX "$BANGER_STATE_DIR"
    # A directory the stand-in guest's agent (the owner) may write.
    GUEST_DIR="$P_TMP/guest"
    mkdir -p "$GUEST_DIR"
    chown "$OWNER_UID" "$GUEST_DIR"
}

teardown() {
    pipeline_teardown
}

# up [SNAP-FLAG] [START-FLAGS...]: the pipeline without a network (the direct launcher's
# Firecracker runs as the owner, who may not open /dev/net/tun here; the agent needs none).
# shellcheck disable=SC2120 # called with flags through bats' run, which shellcheck does not follow
up() {
    local snap=()
    [ "${1:-}" = --no-agent ] && { snap=(--no-agent); shift; }
    set -o pipefail
    banger-vm new t1 --image default | banger-snap create "${snap[@]}" |
        banger-jail launch --launcher direct | banger-vm start --timeout 20 "$@"
}

@test "agent (stand-in firecracker, host banger-agent as the stand-in guest): start waits on the agent's hello; the disk has the agent and its start" {
    run --separate-stderr up
    assert_success
    echo "$output" | jq -e '.snap.agent == "init-hook" and .vm.ready == "agent" and .vm.agent.version != null and (.vm.boot_ms | type) == "number"'
    local rec disk sock
    rec=$output
    disk=$(jq -r .snap.path <<<"$rec")
    # Firecracker was given the vsock device, and the kernel runs the agent first.
    run cat "$(jq -r .jail.root <<<"$rec")/standin-requests.jsonl"
    jq -s -e --argjson r "$rec" 'map(select(.path == "/vsock"))[0].body == {"guest_cid": 3, "uds_path": $r.jail.vsock_uds}' <<<"$output"
    run banger vm console t1
    assert_output --partial "init=/usr/local/sbin/banger-agent"
    # The run dir's link reaches the socket; only the owner may use it.
    sock=$(jq -r .jail.vsock_sock <<<"$rec")
    [ -L "$sock" ]
    [ "$(stat -L -c '%u %a' "$sock")" = "$OWNER_UID 600" ]
    # Status shows the live hello.
    run banger-vm status t1
    echo "$output" | jq -e '.vm.live.agent.agent == "banger-agent" and .vm.live.agent.protocol == 1'
    # The disk holds the agent, its unit and the unit's enablement (written before boot).
    banger down t1 --timeout 2 >/dev/null 2>&1
    cmp <(guest_cat "$disk" /usr/local/sbin/banger-agent) "$BANGER_AGENT"
    guest_cat "$disk" /etc/systemd/system/banger-agent.service | grep -qx "ExecStart=/usr/local/sbin/banger-agent"
    run debugfs -R "stat /etc/systemd/system/sysinit.target.wants/banger-agent.service" "$disk"
    assert_output --partial 'Fast link dest: "../banger-agent.service"'
    run debugfs -R "stat /usr/local/sbin/banger-agent" "$disk"
    assert_output --regexp 'Mode: +0755'
}

@test "agent (stand-in firecracker, host banger-agent as the stand-in guest): vm exec passes output, exit codes, signals and stdin through" {
    up >/dev/null 2>&1
    run --separate-stderr banger vm exec t1 -- uname -r
    assert_success
    assert_output "$(uname -r)"
    run banger vm exec t1 -- sh -c 'exit 3'
    assert_failure 3
    run banger vm exec t1 -- sh -c 'kill -TERM $$'
    assert_failure 143
    run --separate-stderr bash -c 'echo hi | banger vm exec t1 -- cat'
    assert_success
    assert_output "hi"
    run --separate-stderr bash -c 'banger vm exec t1 -- sh -c "echo out; echo err >&2"'
    assert_output "out"
    [ "$stderr" = "err" ]
    # The argv arrives as it was given: no shell re-splits it.
    run banger vm exec t1 -- printf '%s|' 'a b' "it's" '$HOME'
    assert_output 'a b|it'"'"'s|$HOME|'
    # Options between NAME and --.
    run banger vm exec t1 --env FOO=bar --cwd /tmp -- sh -c 'echo "$FOO $(pwd)"'
    assert_output "bar /tmp"
    run banger vm exec t1 --timeout 0.3 -- sleep 30
    assert_failure 137
    # On a terminal (-t): the command sees one, of a default size when ours is not one.
    run --separate-stderr banger vm exec -t t1 -- sh -c 'test -t 0 && test -t 1 && stty size'
    assert_success
    assert_output --partial "24 80"
    # A command that is not there: 127, as a shell says.
    run -127 --separate-stderr banger vm exec t1 -- /nonexistent/cmd
    assert_failure 127
    [[ "$stderr" == *"/nonexistent/cmd"* ]]
    # A closed stdout ends the remote command quietly.
    run --separate-stderr bash -c 'set -o pipefail; banger vm exec t1 -- sh -c "yes | head -c 10000000" | head -c 10 >/dev/null'
    assert_success
}

@test "agent (stand-in firecracker, host banger-agent as the stand-in guest): vm cp round-trips a file with the same sha256, keeps its mode, and says what went wrong" {
    up >/dev/null 2>&1
    head -c $((10 * 1024 * 1024)) /dev/urandom >"$BATS_TEST_TMPDIR/blob"
    chmod 0640 "$BATS_TEST_TMPDIR/blob"
    run --separate-stderr banger vm cp "$BATS_TEST_TMPDIR/blob" "t1:$GUEST_DIR/blob"
    assert_success
    [ "$(stat -c %a "$GUEST_DIR/blob")" = 640 ]
    run --separate-stderr banger vm cp "t1:$GUEST_DIR/blob" "$BATS_TEST_TMPDIR/back"
    assert_success
    [ "$(sha256sum <"$BATS_TEST_TMPDIR/blob")" = "$(sha256sum <"$BATS_TEST_TMPDIR/back")" ]
    # Into a directory, from stdin, to stdout; --mode.
    mkdir "$BATS_TEST_TMPDIR/into"
    banger vm cp "t1:$GUEST_DIR/blob" "$BATS_TEST_TMPDIR/into"
    cmp "$BATS_TEST_TMPDIR/blob" "$BATS_TEST_TMPDIR/into/blob"
    echo hello | banger vm cp --mode 0600 - "t1:$GUEST_DIR/greeting"
    [ "$(stat -c %a "$GUEST_DIR/greeting")" = 600 ]
    run banger vm cp "t1:$GUEST_DIR/greeting" -
    assert_output hello
    # A destination that is a device or a FIFO is written into, never replaced by a file;
    # a symlink is followed.
    mkfifo "$BATS_TEST_TMPDIR/fifo"
    cat "$BATS_TEST_TMPDIR/fifo" >"$BATS_TEST_TMPDIR/from-fifo" &
    banger vm cp "t1:$GUEST_DIR/greeting" "$BATS_TEST_TMPDIR/fifo"
    wait $!
    [ -p "$BATS_TEST_TMPDIR/fifo" ] && [ "$(cat "$BATS_TEST_TMPDIR/from-fifo")" = hello ]
    # A character device of the test's own (the host's /dev/null is never a test's target:
    # a bug here would replace it for everyone on the machine).
    mknod -m 0666 "$BATS_TEST_TMPDIR/null" c 1 3
    banger vm cp "t1:$GUEST_DIR/greeting" "$BATS_TEST_TMPDIR/null"
    [ -c "$BATS_TEST_TMPDIR/null" ]
    echo old >"$BATS_TEST_TMPDIR/real"
    ln -s real "$BATS_TEST_TMPDIR/link"
    banger vm cp "t1:$GUEST_DIR/greeting" "$BATS_TEST_TMPDIR/link"
    [ -L "$BATS_TEST_TMPDIR/link" ] && [ "$(cat "$BATS_TEST_TMPDIR/real")" = hello ]
    mkfifo "$GUEST_DIR/gfifo"
    run --separate-stderr banger vm cp "$BATS_TEST_TMPDIR/blob" "t1:$GUEST_DIR/gfifo"
    assert_failure 1
    [[ "$stderr" == *"not a regular file"* ]]
    [ -p "$GUEST_DIR/gfifo" ]
    # Errors name the problem; nothing half-written is left.
    run --separate-stderr banger vm cp "t1:$GUEST_DIR/missing" "$BATS_TEST_TMPDIR/x"
    assert_failure 1
    [[ "$stderr" == *"missing"* && "$stderr" == *"not_found"* ]]
    [ ! -e "$BATS_TEST_TMPDIR/x" ]
    run --separate-stderr banger vm cp "$BATS_TEST_TMPDIR/blob" "t1:/nonexistent-dir/blob"
    assert_failure 1
    [[ "$stderr" == *"no directory /nonexistent-dir"* ]]
    run --separate-stderr banger vm cp "t1:$GUEST_DIR" "$BATS_TEST_TMPDIR/y"
    assert_failure 1
    [[ "$stderr" == *"not a regular file"* ]]
    run --separate-stderr banger vm cp a b
    assert_failure 2
    run --separate-stderr banger vm cp t1:/a t1:/b
    assert_failure 2
    [ -z "$(find "$GUEST_DIR" "$BATS_TEST_TMPDIR" -name '*.banger-*')" ]
}

@test "agent (stand-in firecracker): --no-agent writes no agent; start then waits as before, and exec --via agent says there is none" {
    unset BANGER_BOOT_ARGS_EXTRA
    run --separate-stderr up --no-agent --wait console:STANDIN_GUEST_READY
    assert_success
    echo "$output" | jq -e '.snap.agent == "none" and .vm.ready == "console" and .vm.agent == null'
    run banger vm console t1
    refute_output --partial "banger-agent"
    run --separate-stderr banger vm exec --via agent t1 -- true
    assert_failure 1
    [[ "$stderr" == *"no agent answers on vsock port 1023"* ]]
    run banger-vm status t1
    echo "$output" | jq -e '.vm.live.agent == null'
    banger down t1 --timeout 2 >/dev/null 2>&1
    run debugfs -R "stat /usr/local/sbin/banger-agent" "$(banger-vm status t1 | jq -r .snap.path)"
    assert_output --partial "File not found"
}

@test "agent (stand-in firecracker): no usable agent binary on the host: a warning, and the VM gets none" {
    # A dynamically linked agent (the host build) cannot be a guest's first process.
    export BANGER_AGENT="$BIN/banger-agent"
    stop_helper
    rm -f "$BANGER_HELPER_SOCKET"
    start_helper_in "$NS_H" --owner "$OWNER_UID"
    run --separate-stderr bash -c 'banger-vm new t2 --image default | banger-snap create'
    assert_success
    [[ "$stderr" == *"dynamically linked"* && "$stderr" == *"the VM gets no agent"* ]]
    echo "$output" | jq -e '.snap.agent == "none"'
}
