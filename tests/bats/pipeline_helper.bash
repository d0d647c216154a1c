# shellcheck shell=bash
# Shared by the suites that run the whole pipeline (pipeline.bats with the stand-ins,
# vm-real.bats and vm-slow.bats with the real Firecracker). Load after test_helper and
# net_helper.
#
# pipeline_env [TMPBASE]: net_env (a namespace H of the test's own, the host's links and
# ruleset snapshotted), then state, run and jail dirs under a world-traversable temp dir
# (Firecracker runs as the owner uid and must reach its files), and the owner uid.
pipeline_env() {
    P_TMP=""
    net_env
    P_TMP="$(mktemp -d "${1:-/tmp}/banger-pipe.XXXXXX")"
    chmod 0755 "$P_TMP"
    export BANGER_STATE_DIR="$P_TMP/state" BANGER_RUN_DIR="$P_TMP/run" BANGER_JAIL_DIR="$P_TMP/jail"
    export BANGER_OWNER_UID="$OWNER_UID"
    mkdir -p "$BANGER_STATE_DIR" "$BANGER_RUN_DIR"
}

# pipeline_teardown: kills the Firecrackers this test's jailer pidfiles name (checked by comm),
# then net_teardown (which fails the test if the host's links or ruleset changed).
pipeline_teardown() {
    local f pid rc
    # Only pidfiles under this test's own temp dir (setup may have skipped before making it):
    # the jailer's in the chroot, the direct launcher's beside it.
    for f in ${P_TMP:+"$P_TMP"/jail/*/*/root/*.pid "$P_TMP"/jail/direct/*/firecracker.pid}; do
        [ -f "$f" ] || continue
        pid=$(tr -d '[:space:]' <"$f")
        case "$(cat /proc/"$pid"/comm 2>/dev/null)" in firecracker*) kill -9 "$pid" 2>/dev/null ;; esac
    done
    net_teardown
    rc=$?
    [ -n "${P_TMP:-}" ] && rm -rf "$P_TMP"
    return $rc
}
