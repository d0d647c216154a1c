#!/usr/bin/env bats
# banger, the dispatcher.

load test_helper

setup() {
    banger_env
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

@test "banger commands lists the installed subcommands" {
    run banger commands
    assert_success
    assert_line --regexp '^vm +a VM'
    assert_line --regexp '^helper'
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
