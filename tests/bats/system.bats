#!/usr/bin/env bats
# banger-system without a running systemd: its command line, the units it renders checked by
# systemd-analyze (verify, and the security exposure, printed), the refusals that come before
# anything is written, and the client waiting for an installed helper that restarts.
# The install, restart, update and uninstall under a real systemd: system-nspawn.bats.

bats_require_minimum_version 1.5.0

load test_helper

setup() {
    banger_env
}

teardown() {
    banger_teardown
}

@test "banger-system: --help, --version, usage errors" {
    run banger-system --help
    assert_success
    assert_output --partial "install"
    assert_output --partial "--purge"
    run banger-system --version
    assert_output --regexp '^banger-system [0-9.]+ \(commit [0-9a-z]+\)$'
    run banger-system install --frobnicate
    assert_failure 2
    run banger-system update
    assert_failure 2
    assert_output --partial "--from"
    run banger-system frob
    assert_failure 2
    run banger system --help
    assert_success
}

@test "banger-system: install, restart, update and uninstall refuse a user who is not root" {
    require_root
    local c
    for c in install restart "update --from /nonexistent" uninstall; do
        # shellcheck disable=SC2086
        run as_uid "$OWNER_UID" banger-system $c
        assert_failure 1
        assert_output --partial "must run as root: sudo banger system ${c%% *}"
    done
}

@test "banger-system: install refuses root as the owner, and a missing owner, before writing anything" {
    require_root
    run banger-system install --owner root
    assert_failure 1
    assert_output --partial 'refusing "root" as the owner'
    run env -u SUDO_USER banger-system install
    assert_failure 1
    assert_output --partial "no --owner given and SUDO_USER is not set"
    run banger-system install --owner no-such-user-banger
    assert_failure 1
    assert_output --partial 'no user named "no-such-user-banger"'
    [ ! -e "$BANGER_CONFIG_DIR/install.json" ]
    [ ! -e "$BANGER_CONFIG_DIR/config.json" ]
}

# verify_prefix: a prefix whose bin/ holds this build's binaries (symlinks).
verify_prefix() {
    local p="$BATS_TEST_TMPDIR/prefix" b
    mkdir -p "$p/bin"
    for b in "$BIN"/banger*; do
        case "$b" in *.d) continue ;; esac
        ln -s "$b" "$p/bin/"
    done
    echo "$p"
}

@test "banger-system units: systemd-analyze verify finds nothing; the helper's exposure is printed and below 5.0" {
    command -v systemd-analyze >/dev/null || skip "SKIPPED LOUDLY: systemd-analyze is not installed"
    local prefix out="$BATS_TEST_TMPDIR/units"
    prefix=$(verify_prefix)
    # Any existing unprivileged user will do as the owner (daemon exists on every Debian).
    run banger-system units --owner daemon --prefix "$prefix" --out "$out"
    assert_success
    run ls "$out"
    assert_output "banger-helper.service
banger-helper.socket
banger-reconcile-boot.service
banger-reconcile.service
banger-reconcile.timer
banger.tmpfiles"
    (cd "$out" && systemd-analyze verify --man=no ./banger-helper.socket ./banger-helper.service \
        ./banger-reconcile.service ./banger-reconcile.timer ./banger-reconcile-boot.service) >"$BATS_TEST_TMPDIR/verify" 2>&1 || true
    run cat "$BATS_TEST_TMPDIR/verify"
    assert_output ""
    run systemd-analyze security --offline=true --no-pager "$out/banger-helper.service"
    local line
    line=$(grep 'Overall exposure level' <<<"$output")
    echo "# units: $line" >&3
    [[ "$line" =~ ([0-9]+\.[0-9]) ]]
    awk -v e="${BASH_REMATCH[1]}" 'BEGIN { exit !(e < 5.0) }'
    run systemd-analyze security --offline=true --no-pager "$out/banger-reconcile.service"
    echo "# units: reconcile: $(grep 'Overall exposure level' <<<"$output")" >&3
    run systemd-analyze security --offline=true --no-pager "$out/banger-reconcile-boot.service"
    echo "# units: reconcile at boot: $(grep 'Overall exposure level' <<<"$output")" >&3
    # The printed form matches the file form.
    run banger-system units --owner daemon --prefix "$prefix"
    assert_output --partial "# ==> banger-helper.service <=="
    assert_output --partial "ExecStart=$prefix/bin/banger-helper"
}

@test "client: an installed helper that is restarting is waited for, then answers the owner" {
    require_root
    # Config and state where the owner can reach them (the test's temp dir's parents are private).
    export BANGER_CONFIG_DIR="$HELPER_DIR/etc" BANGER_STATE_DIR="$HELPER_DIR/state"
    mkdir -p "$BANGER_CONFIG_DIR" "$BANGER_STATE_DIR"
    chmod 0755 "$BANGER_CONFIG_DIR"
    chmod 0777 "$BANGER_STATE_DIR"
    printf '{"owner":"alice","uid":%s,"gid":%s}\n' "$OWNER_UID" "$OWNER_UID" >"$BANGER_CONFIG_DIR/install.json"
    chmod 0644 "$BANGER_CONFIG_DIR/install.json"
    # No helper yet: the owner's ping waits (up to 5 s); the helper comes up after 1 s.
    local out="$HELPER_DIR/out"
    (
        rc=0
        as_uid "$OWNER_UID" env BANGER_HELPER_WAIT=5 banger-net list >"$out" 2>&1 || rc=$?
        echo "rc=$rc" >>"$out"
    ) &
    local client=$!
    sleep 1
    start_helper --owner "$OWNER_UID"
    wait "$client" || true
    run cat "$out"
    assert_output --partial "rc=0"
    # With the helper gone for good, the wait ends with "installed but not running".
    stop_helper
    run as_uid "$OWNER_UID" env BANGER_HELPER_WAIT=0.3 banger-net list
    assert_failure 1
    assert_output --partial "installed but not running"
    assert_output --partial "run: sudo banger system restart"
    # Without install.json: "not installed", at once.
    rm "$BANGER_CONFIG_DIR/install.json"
    SECONDS=0
    run as_uid "$OWNER_UID" env BANGER_HELPER_WAIT=5 banger-net list
    assert_failure 1
    assert_output --partial "banger is not installed on this host"
    [ "$SECONDS" -lt 3 ]
}
