#!/usr/bin/env bats
# banger, the dispatcher.

load test_helper

setup() {
    banger_env
    stub_image x y debian
}

teardown() {
    banger_teardown
}

@test "banger SUB ARGS execs banger-SUB ARGS" {
    run banger vm new a --image x
    assert_success
    echo "$output" | jq -e '.name == "a"'
    run banger vm list --table
    assert_line --index 1 --partial "a "
}

@test "banger finds banger-SUB next to itself before PATH" {
    mkdir -p "$BATS_TEST_TMPDIR/pathbin"
    printf '#!/bin/sh\necho impostor\n' >"$BATS_TEST_TMPDIR/pathbin/banger-vm"
    chmod +x "$BATS_TEST_TMPDIR/pathbin/banger-vm"
    run env PATH="$BATS_TEST_TMPDIR/pathbin:$PATH" "$BIN/banger" vm list
    refute_output --partial impostor
    # ... and falls back to PATH for commands it does not ship.
    printf '#!/bin/sh\necho "extra: $*"\n' >"$BATS_TEST_TMPDIR/pathbin/banger-extra"
    chmod +x "$BATS_TEST_TMPDIR/pathbin/banger-extra"
    run env PATH="$BATS_TEST_TMPDIR/pathbin:$PATH" "$BIN/banger" extra 1 2
    assert_output "extra: 1 2"
    run env PATH="$BATS_TEST_TMPDIR/pathbin:$PATH" "$BIN/banger" commands
    assert_line --regexp '^extra'
}

@test "banger help SUB and banger SUB --help show the step's help" {
    run banger help vm
    assert_success
    assert_output --partial "banger-vm new NAME"
    run banger vm --help
    assert_success
    assert_output --partial "banger-vm new NAME"
}

@test "banger: an unknown subcommand gets a suggestion and exit 2" {
    run banger vn list
    assert_failure 2
    assert_output --partial "Did you mean 'banger vm'?"
    run banger zzzzzz
    assert_failure 2
    refute_output --partial "Did you mean"
}

@test "banger commands lists the installed subcommands, not the internal programs (issue 13, item 8)" {
    run banger commands
    assert_success
    assert_line --regexp '^vm +a VM'
    assert_line --regexp '^doctor +is this host ready'
    refute_line --regexp '^helper'
    refute_line --regexp '^console-keeper'
    # Nor a program next to banger that does not describe itself (the guest agent is one).
    local dir="$BATS_TEST_TMPDIR/own"
    mkdir -p "$dir"
    cp "$BIN/banger" "$BIN/banger-vm" "$dir/"
    printf '#!/bin/sh\necho "usage: banger-agent"\n' >"$dir/banger-agent"
    chmod +x "$dir/banger-agent"
    run env PATH=/usr/bin:/bin "$dir/banger" commands
    assert_output --regexp '^vm +a VM'
    refute_output --partial agent
    run env PATH=/usr/bin:/bin "$dir/banger" --help
    assert_line --regexp '^  vm +a VM'
    refute_output --partial agent
}

@test "banger: a command that is not installed is not suggested as itself (issue 13, item 8)" {
    local dir="$BATS_TEST_TMPDIR/own"
    mkdir -p "$dir"
    cp "$BIN/banger" "$BIN/banger-vm" "$dir/"
    run env PATH=/usr/bin:/bin "$dir/banger" up dev1
    assert_failure 2
    assert_output --partial "'up' is not a banger command (no banger-up next to banger or on PATH)"
    refute_output --partial "Did you mean"
    run env PATH=/usr/bin:/bin "$dir/banger" vn list
    assert_failure 2
    assert_output --partial "Did you mean 'banger vm'?"
}

@test "sub-binaries suggest a near command (issue 13)" {
    run banger-vm lst
    assert_failure 2
    assert_output --partial 'unknown command "lst"; did you mean "list"?'
    run banger-net frward a 80
    assert_failure 2
    assert_output --partial 'did you mean "forward"?'
}

@test "banger: --help, --version, no arguments" {
    run banger --help
    assert_success
    assert_output --partial "Banger commands:"
    run banger --version
    assert_output --regexp '^banger [0-9]'
    run banger
    assert_failure 2
}
