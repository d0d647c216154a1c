#!/usr/bin/env bash
# Benchmark: stage + launch and teardown of one VM's jail with `banger-jail`, per VM, through
# the jailer and with --launcher direct. Prints the numbers; asserts nothing. Needs root.
#
#   sudo benches/jail.sh               # the TEST STAND-INS (target/*/firecracker, jailer)
#   BANGER_TEST_FIRECRACKER=/usr/bin/firecracker BANGER_TEST_JAILER=/usr/bin/jailer \
#     REPS=50 sudo -E benches/jail.sh  # the real ones
#
# Runs in a private mount namespace of its own, in process (no helper daemon), with all state
# under a temp dir that is removed on exit; every Firecracker it starts is torn down.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BANGER_BIN:-}
if [ -z "$bin" ]; then
    if [ -x "$here/target/release/banger-jail" ]; then bin=$here/target/release; else bin=$here/target/debug; fi
fi
[ -x "$bin/banger-jail" ] || { echo "jail.sh: $bin/banger-jail not built (cargo build --release)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "jail.sh: needs root" >&2; exit 1; }
if [ -z "${JAIL_BENCH_IN_NS:-}" ]; then
    JAIL_BENCH_IN_NS=1 exec unshare -m --propagation private "$0" "$@"
fi
fc=${BANGER_TEST_FIRECRACKER:-}
jailer=${BANGER_TEST_JAILER:-}
kind="real Firecracker"
if [ -z "$fc" ] || [ -z "$jailer" ]; then
    # shellcheck source=benches/standin.bash
    . "$here/benches/standin.bash"
    standin_links "$bin" "$here" || exit 1
    kind="TEST STAND-IN firecracker/jailer"
fi
reps=${REPS:-20}

tmp=$(mktemp -d /tmp/banger-jail-bench.XXXXXX)
chmod 0755 "$tmp"
cleanup() {
    local n
    for n in $(seq 1 "$reps"); do "$bin/banger-jail" teardown "b$n" >/dev/null 2>&1 || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
export BANGER_STATE_DIR=$tmp/state BANGER_RUN_DIR=$tmp/run BANGER_CONFIG_DIR=$tmp/etc
export BANGER_ROOT_DIR=$tmp/root BANGER_JAIL_DIR=$tmp/jail BANGER_HELPER_SOCKET=$tmp/none.sock
export BANGER_FIRECRACKER=$fc BANGER_JAILER=$jailer BANGER_OWNER_UID=${BANGER_OWNER_UID:-4343}
mkdir -p "$BANGER_STATE_DIR/images/tiny" "$BANGER_STATE_DIR/vms"
head -c 4M /dev/urandom >"$BANGER_STATE_DIR/images/tiny/vmlinux"
chmod -R a+rX "$BANGER_STATE_DIR"
# Each VM's record in the store (steps act only on VMs the store has), with a disk.
for n in $(seq 1 "$reps"); do
    mkdir -p "$BANGER_STATE_DIR/vms/b$n"
    truncate -s 1G "$BANGER_STATE_DIR/vms/b$n/disk.ext4"
    chown "$BANGER_OWNER_UID:$BANGER_OWNER_UID" "$BANGER_STATE_DIR/vms/b$n/disk.ext4"
    jq -n --arg n "b$n" --arg d "$BANGER_STATE_DIR/vms/b$n/disk.ext4" \
        '{v:1,type:"vm",name:$n,spec:{image:"tiny",vcpus:1,mem_mib:128},snap:{path:$d}}' \
        >"$BANGER_STATE_DIR/vms/b$n/vm.json"
    chmod 0755 "$BANGER_STATE_DIR/vms/b$n"
done

now_ms() { date +%s%3N; }
stats() { sort -n | awk '{a[NR]=$1; s+=$1} END {printf "mean %6.1f ms  median %4d ms  min %4d ms  max %4d ms  (n=%d)\n", s/NR, a[int((NR+1)/2)], a[1], a[NR], NR}'; }

echo "banger-jail benchmark: $kind, $reps VMs, 4 MiB kernel, 1 GiB sparse disk, $bin"
for launcher in jailer direct; do
    launch_t=() down_t=()
    for n in $(seq 1 "$reps"); do
        t0=$(now_ms)
        "$bin/banger-jail" launch --launcher "$launcher" "b$n" >/dev/null
        t1=$(now_ms)
        "$bin/banger-jail" teardown "b$n" >/dev/null
        t2=$(now_ms)
        launch_t+=($((t1 - t0)))
        down_t+=($((t2 - t1)))
    done
    printf '  %-7s stage+launch (API answers): ' "$launcher"
    printf '%s\n' "${launch_t[@]}" | stats
    printf '  %-7s teardown:                   ' "$launcher"
    printf '%s\n' "${down_t[@]}" | stats
done
