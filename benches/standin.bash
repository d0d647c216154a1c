# shellcheck shell=bash disable=SC2034,SC2154  # sets fc, jailer, bin... for the benchmark that sources this, and reads its here
# Sourced by the benchmarks. standin_links BIN REPO: the Firecracker and jailer TEST
# STAND-INS (built as *-standin so no PATH offers them as the real thing) under their real
# names, as hard links in BIN/standin (falling back to REPO/target/debug); sets fc and jailer.
standin_links() {
    local sdir=$1
    [ -x "$sdir/firecracker-standin" ] || sdir=$2/target/debug
    [ -x "$sdir/firecracker-standin" ] && [ -x "$sdir/jailer-standin" ] \
        || { echo "stand-ins not built (cargo build -p banger-standin)" >&2; return 1; }
    mkdir -p "$sdir/standin"
    ln -f "$sdir/firecracker-standin" "$sdir/standin/firecracker"
    ln -f "$sdir/jailer-standin" "$sdir/standin/jailer"
    fc=$sdir/standin/firecracker
    jailer=$sdir/standin/jailer
}

# bench_bin NAME PROGRAM...: sets bin (BANGER_BIN, else the release build, else the debug
# one) and exits naming what is not built.
bench_bin() {
    local name=$1 b
    shift
    bin=${BANGER_BIN:-}
    if [ -z "$bin" ]; then
        if [ -x "$here/target/release/banger-vm" ]; then bin=$here/target/release; else bin=$here/target/debug; fi
    fi
    # Absolute: the helper (another process, another directory) runs the stand-ins from here.
    bin=$(cd "$bin" && pwd) || { echo "$name: no directory $bin" >&2; exit 1; }
    for b in "$@"; do
        [ -x "$bin/$b" ] || { echo "$name: $bin/$b not built (cargo build --release)" >&2; exit 1; }
    done
}

# bench_firecracker: fc and jailer, the real ones (BANGER_TEST_FIRECRACKER, BANGER_TEST_JAILER)
# or the stand-ins; standin is 1 for the stand-ins; rig is the shared rig's directory.
bench_firecracker() {
    standin=1
    if [ -n "${BANGER_TEST_FIRECRACKER:-}" ] && [ -n "${BANGER_TEST_JAILER:-}" ]; then
        fc=$BANGER_TEST_FIRECRACKER
        jailer=$BANGER_TEST_JAILER
        standin=0
    else
        standin_links "$bin" "$here" || exit 1
    fi
    rig=${BANGER_TEST_RIG:-$here/../shared/rig}
}

# bench_in_netns NAME SCRIPT ARGS...: unless already inside, runs SCRIPT again in a network
# namespace of its own (with a default route for NAT's uplink, inside the namespace only)
# and a private mount namespace, removes the namespace after, and exits with its status.
bench_in_netns() {
    local name=$1 rc=0
    shift
    [ -z "${BANGER_BENCH_IN_NS:-}" ] || return 0
    [ "$(id -u)" -eq 0 ] || { echo "$name: needs root" >&2; exit 1; }
    bench_ns="banger-bench-${name%.sh}-$$"
    ip netns add "$bench_ns"
    trap 'ip netns del "$bench_ns" 2>/dev/null || true' EXIT
    ip -n "$bench_ns" link set lo up
    ip -n "$bench_ns" link add up0 type veth peer name up1
    ip -n "$bench_ns" addr add 198.51.100.1/24 dev up0
    ip -n "$bench_ns" link set up0 up
    ip -n "$bench_ns" link set up1 up
    ip -n "$bench_ns" route add default via 198.51.100.2
    BANGER_BENCH_IN_NS=1 ip netns exec "$bench_ns" unshare -m --propagation private "$@" || rc=$?
    exit "$rc"
}
