# shellcheck shell=bash disable=SC2034  # fc and jailer are set for the benchmark that sources this
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
