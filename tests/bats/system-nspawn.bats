#!/usr/bin/env bats
# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
# banger-system under a REAL systemd: a Debian tree debootstrapped once for this file, booted
# with systemd-nspawn (--private-network: the container has its own network namespace, so
# the bridge, taps and nft table it makes never touch the host's) and driven with nsenter.
# Firecracker and its jailer are the TEST STAND-INS (tests/standin, not Firecracker), or with
# BANGER_TEST_FIRECRACKER and BANGER_TEST_JAILER set, the real ones booting the rig's tiny guest.
# Skips loudly where systemd-nspawn or debootstrap is missing. The tests run in order and
# build on each other: install, status, a VM, restarts, updates, down, uninstall --purge.

bats_require_minimum_version 1.5.0

load test_helper
load snap_helper
load nspawn_helper

setup_file() {
    local missing
    missing=$(nspawn_missing)
    if [ -n "$missing" ]; then
        echo "# SKIPPED LOUDLY: the systemd tier needs $missing" >&3
        export NSPAWN_SKIP="needs $missing"
        return 0
    fi
    local t0=$SECONDS
    nspawn_setup || { nspawn_cleanup; return 1; }
    stage_build /opt/b1
    stage_build /opt/b2 second
    echo "# nspawn tier: set up in $((SECONDS - t0)) s" >&3
    export NSPAWN_T0=$SECONDS
}

teardown_file() {
    [ -n "${NSPAWN_T0:-}" ] && echo "# nspawn tier: tests took $((SECONDS - NSPAWN_T0)) s" >&3
    nspawn_cleanup
}

setup() {
    [ -z "${NSPAWN_SKIP:-}" ] || skip "SKIPPED LOUDLY: the systemd tier $NSPAWN_SKIP"
}

# The (stand-in or real) Firecracker of VM t1: its PID, and whether its API answers Running.
fc_pid() { as_owner banger-vm status t1 | jq -r .jail.pid; }
fc_answers() {
    as_owner banger-vm status t1 | jq -e '.vm.live.api_state == "Running"' >/dev/null
}
# rec NAME: the record named NAME from $output (JSON lines).
rec() { jq -c --arg n "$1" 'select(.name == $n)' <<<"$output"; }
helper_pid() { inside systemctl show -p MainPID --value banger-helper.service; }
ping_field() { as_owner banger-system status | jq -r "select(.type == \"system\") | .helper.$1"; }

@test "system (nspawn): install --owner under a real systemd enables the socket and the timer; the helper answers the owner" {
    run --separate-stderr inside /opt/b1/bin/banger-system install --owner "$NSPAWN_OWNER" \
        --firecracker /opt/fc/firecracker --jailer /opt/fc/jailer
    assert_success
    echo "$output" | jq -e '.owner == "alice" and .files_written > 20 and .helper.pid > 0'
    [[ "$stderr" == *"is installed for alice"* ]]
    [ "$(inside systemctl is-enabled banger-helper.socket)" = enabled ]
    [ "$(inside systemctl is-active banger-helper.socket)" = active ]
    [ "$(inside systemctl is-enabled banger-reconcile.timer)" = enabled ]
    [ "$(inside systemctl is-active banger-reconcile.timer)" = active ]
    [ "$(inside systemctl is-enabled banger-reconcile-boot.service)" = enabled ]
    [ "$(inside systemctl is-active banger-helper.service)" = active ]
    # Type=notify: systemd got READY=1 and the status line.
    inside systemctl show -p StatusText --value banger-helper.service | grep -q "serving on /run/banger-root/helper.sock"
    # install.json and config.json as the helper and the owner's steps read them.
    inside cat /etc/banger/install.json | jq -e '.owner == "alice" and .uid == 1000 and .home == "/home/alice" and (.commit | length) > 0 and (.built_at | endswith("Z")) and (.files | length) > 20'
    inside cat /etc/banger/config.json | jq -e '.firecracker == "/opt/fc/firecracker" and .jailer == "/opt/fc/jailer"'
    # The socket: the owner's, mode 0600.
    [ "$(inside stat -c '%U %a' /run/banger-root/helper.sock)" = "alice 600" ]
    [ "$(inside stat -c '%U %a' /var/lib/banger)" = "alice 750" ]
    [ "$(inside stat -c '%U %a' /var/lib/banger-root)" = "root 700" ]
    # Running it again changes nothing and restarts nothing.
    local pid
    pid=$(helper_pid)
    run --separate-stderr inside /opt/b1/bin/banger-system install --owner "$NSPAWN_OWNER"
    assert_success
    echo "$output" | jq -e '.changed == [] and .files_written == 0'
    [ "$(helper_pid)" = "$pid" ]
    # The live unit's exposure, as systemd rates it.
    inside systemd-analyze security banger-helper.service --no-pager | tail -1 >&3
}

@test "system (nspawn): status as the owner (JSON and table); another user is told who banger is installed for" {
    run --separate-stderr as_owner banger system status
    assert_success
    echo "$output" | jq -e -s 'map(select(.type == "unit")) | length == 5'
    rec banger-helper.socket | jq -e '.enabled == "enabled" and .active == "active"'
    rec banger | jq -e --arg pid "$(helper_pid)" '.installed and .owner.name == "alice" and (.helper.pid | tostring) == $pid and .helper.runs_installed_binary and .helper.firecracker.path == "/opt/fc/firecracker" and .vms_running == 0 and (.log | startswith("journalctl -u banger-helper"))'
    run as_owner banger system status --table
    assert_success
    assert_line --regexp "^banger-helper.socket +enabled +active$"
    assert_output --partial "journalctl -u banger-helper.service"
    run --separate-stderr as_user "$NSPAWN_OTHER" banger-net list
    assert_failure 1
    [[ "$stderr" == *"banger is installed for alice"* ]]
    # banger-doctor as the owner: installed, units up, the helper's version and binaries.
    run --separate-stderr as_owner banger-doctor
    rec install | jq -e '.status == "ok"'
    rec units | jq -e '.status == "ok"'
    rec helper-version | jq -e '.status == "ok"'
    rec helper-firecracker | jq -e '.status == "ok" and (.message | contains("/opt/fc/firecracker"))'
}

@test "system (nspawn): the owner brings a VM up with the stand-in (or real) Firecracker through the installed helper" {
    as_owner banger-image import default --rootfs /opt/img/rootfs.ext4 --kernel /opt/img/vmlinux >/dev/null
    run --separate-stderr as_owner banger up t1 --wait-console "$GUEST_READY" --timeout 30
    assert_success
    echo "$output" | jq -e '.vm.state == "running" and .jail.launcher == "jailer" and .net.tap != null'
    fc_answers
    # Firecracker runs as the owner.
    [ "$(inside ps -o user= -p "$(fc_pid)")" = alice ]
    # The timer's reconcile run and the boot run, as the owner under their hardened units:
    # nothing to repair, the VM untouched.
    local fc
    fc=$(fc_pid)
    inside systemctl start banger-reconcile.service
    [ "$(inside systemctl show -p Result --value banger-reconcile.service)" = success ]
    inside systemctl restart banger-reconcile-boot.service
    [ "$(inside systemctl show -p Result --value banger-reconcile-boot.service)" = success ]
    [ "$(fc_pid)" = "$fc" ]
    fc_answers
}

@test "system (nspawn): systemctl restart banger-helper leaves the stand-in (or real) Firecracker running with the same PID" {
    local fc before
    fc=$(fc_pid)
    before=$(helper_pid)
    inside systemctl restart banger-helper.service
    as_owner banger-system status >/dev/null
    [ "$(helper_pid)" != "$before" ]
    [ "$(fc_pid)" = "$fc" ]
    inside kill -0 "$fc"
    fc_answers
}

@test "system (nspawn): banger system restart leaves the stand-in (or real) Firecracker running with the same PID" {
    local fc before
    fc=$(fc_pid)
    before=$(helper_pid)
    run --separate-stderr inside banger system restart
    assert_success
    echo "$output" | jq -e --arg fc "$fc" '(.vms | map(.pid | tostring)) == [$fc] and .before != .after'
    [ "$(helper_pid)" != "$before" ]
    [ "$(fc_pid)" = "$fc" ]
    fc_answers
}

@test "system (nspawn): update --from a second build swaps the binaries; the stand-in (or real) Firecracker keeps its PID" {
    # The second build is this checkout's, every binary with a different trailing marker, so
    # each installed file changes and the helper must be the new executable.
    local fc before new
    fc=$(fc_pid)
    before=$(helper_pid)
    new=$(inside sha256sum /opt/b2/bin/banger-helper | cut -d' ' -f1)
    run --separate-stderr inside banger system update --from /opt/b2
    assert_success
    echo "$output" | jq -e '.files_swapped > 5 and .after.helper_pid != .before.helper_pid'
    [[ "$stderr" == *"1 running VM(s) kept running with the same Firecracker PIDs"* ]]
    [ "$(inside sha256sum /usr/local/bin/banger-helper | cut -d' ' -f1)" = "$new" ]
    [ "$(ping_field runs_installed_binary)" = true ]
    [ "$(helper_pid)" != "$before" ]
    [ "$(fc_pid)" = "$fc" ]
    fc_answers
    inside cat /etc/banger/install.json | jq -e '.updated_at | endswith("Z")'
}

@test "system (nspawn): an update whose helper never starts is rolled back; the old helper answers and the stand-in (or real) Firecracker runs on" {
    local fc old
    fc=$(fc_pid)
    old=$(inside sha256sum /usr/local/bin/banger-helper | cut -d' ' -f1)
    # A third build: the second one with a banger-helper that exits at once.
    inside cp -a /opt/b2 /opt/b3
    inside sh -c 'rm /opt/b3/bin/banger-helper && printf "#!/bin/sh\nexit 1\n" >/opt/b3/bin/banger-helper && chmod 755 /opt/b3/bin/banger-helper'
    run --separate-stderr inside banger system update --from /opt/b3 --wait 10
    assert_failure 1
    [[ "$stderr" == *"failed and was undone"* ]]
    [[ "$stderr" == *"the previous helper answers again"* ]]
    [ "$(inside sha256sum /usr/local/bin/banger-helper | cut -d' ' -f1)" = "$old" ]
    run inside sh -c 'ls -a /usr/local/bin | grep -c banger-prev'
    assert_output 0
    [ "$(ping_field runs_installed_binary)" = true ]
    [ "$(fc_pid)" = "$fc" ]
    fc_answers
}

@test "system (nspawn): update --from a release archive (file://, sha256-pinned) swaps back to the first build; a wrong pin changes nothing; the stand-in (or real) Firecracker keeps its PID" {
    local fc sum b1
    fc=$(fc_pid)
    inside tar -C /opt/b1 -czf /opt/b1.tar.gz .
    sum=$(inside sha256sum /opt/b1.tar.gz | cut -d' ' -f1)
    b1=$(inside sha256sum /opt/b1/bin/banger-helper | cut -d' ' -f1)
    run --separate-stderr inside banger system update --from file:///opt/b1.tar.gz --sha256 "$(printf '0%.0s' $(seq 64))"
    assert_failure 1
    [[ "$stderr" == *"sha256 mismatch"* ]]
    [ "$(inside sha256sum /usr/local/bin/banger-helper | cut -d' ' -f1)" != "$b1" ]
    run --separate-stderr inside banger system update --from file:///opt/b1.tar.gz --sha256 "$sum"
    assert_success
    [ "$(inside sha256sum /usr/local/bin/banger-helper | cut -d' ' -f1)" = "$b1" ]
    [ "$(ping_field runs_installed_binary)" = true ]
    [ "$(fc_pid)" = "$fc" ]
    fc_answers
}

@test "system (nspawn): the owner takes the stand-in (or real) VM down; uninstall --purge leaves no unit, binary, ledger entry, tap or mount" {
    # While it runs, a plain uninstall refuses and changes nothing.
    run --separate-stderr inside banger system uninstall
    assert_failure 1
    [[ "$stderr" == *"VMs are running: t1"* ]]
    inside test -x /usr/local/bin/banger-helper
    run --separate-stderr as_owner banger down t1 --timeout 2
    assert_success
    run --separate-stderr inside banger system uninstall --purge
    assert_success
    echo "$output" | jq -e '.purged'
    run inside systemctl list-unit-files 'banger*' --no-legend
    assert_output ""
    run inside sh -c 'ls /etc/systemd/system /etc/tmpfiles.d /usr/local/bin /usr/local/share/man/man8 | grep banger'
    assert_output ""
    for d in /var/lib/banger /var/lib/banger-root /srv/jailer /run/banger /run/banger-root /etc/banger; do
        run inside test -e "$d"
        assert_failure
    done
    # No tap, no bridge, no nft table, no mount, no Firecracker or keeper left in the container.
    run inside ip -o link show
    refute_output --partial "banger0"
    refute_output --partial "tap"
    run inside nft list tables
    assert_output ""
    run inside grep -E '/srv/jailer|/var/lib/banger' /proc/1/mountinfo
    assert_output ""
    run inside pgrep -a firecracker
    assert_output ""
    run inside pgrep -a banger
    assert_output ""
}
