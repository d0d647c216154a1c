#!/usr/bin/env bash
# Benchmark: banger-reconcile on a consistent host of 10, 100 and 1000 VMs, each brought up by
# `banger up --no-wait` with the Firecracker and jailer TEST STAND-INS (a stand-in Firecracker
# process, its console keeper, a tap, a jail and a disk per VM). A run reads every record, the
# helper's ledger with what the host says of each entry (reconcile.scan), and the process table,
# and finds nothing to do. Prints the numbers; asserts nothing. Needs root.
#
#   sudo benches/reconcile.sh           # COUNTS="10 100 1000" RUNS=5; BANGER_BIN=target/release
#
# Runs in a network namespace and a private mount namespace of its own, through a real helper
# on a temp socket, reconcile as the owner uid (as the timer runs it); all state under a temp
# dir removed on exit, every jail torn down.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BANGER_BIN:-}
if [ -z "$bin" ]; then
    if [ -x "$here/target/release/banger-reconcile" ]; then bin=$here/target/release; else bin=$here/target/debug; fi
fi
for b in banger-vm banger-snap banger-net banger-jail banger-image banger-helper banger-reconcile; do
    [ -x "$bin/$b" ] || { echo "reconcile.sh: $bin/$b not built (cargo build --release)" >&2; exit 1; }
done
# What standin_links sets (declared here so the script reads whole without following the
# source).
fc="" jailer=""
# shellcheck source=benches/standin.bash
. "$here/benches/standin.bash"
standin_links "$bin" "$here" || exit 1
[ "$(id -u)" -eq 0 ] || { echo "reconcile.sh: needs root" >&2; exit 1; }
ns="banger-bench-rec-$$"
if [ -z "${REC_BENCH_IN_NS:-}" ]; then
    ip netns add "$ns"
    trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
    ip -n "$ns" link set lo up
    REC_BENCH_IN_NS=1 ip netns exec "$ns" unshare -m --propagation private "$0" "$@"
    exit $?
fi
counts=${COUNTS:-10 100 1000}
runs=${RUNS:-5}
owner=4343
tmp=$(mktemp -d /tmp/banger-rec-bench.XXXXXX)
chmod 0755 "$tmp"
export PATH="$bin:$PATH"
export BANGER_STATE_DIR=$tmp/state BANGER_RUN_DIR=$tmp/run BANGER_CONFIG_DIR=$tmp/etc
export BANGER_ROOT_DIR=$tmp/root BANGER_JAIL_DIR=$tmp/jail BANGER_HELPER_SOCKET=$tmp/helper.sock
export BANGER_FIRECRACKER=$fc BANGER_JAILER=$jailer BANGER_OWNER_UID=$owner
# Room for 1000 guests (a /24 has 253).
export BANGER_SUBNET=10.200.0.0/20
tag="rb$$"
helper=""
cleanup() {
    banger-vm list 2>/dev/null | banger-jail teardown --grace 0 >/dev/null 2>&1 || true
    [ -n "$helper" ] && kill "$helper" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$BANGER_STATE_DIR" "$BANGER_RUN_DIR" "$tmp/img/etc"
chown "$owner:$owner" "$BANGER_STATE_DIR" "$BANGER_RUN_DIR"
banger-helper --socket "$BANGER_HELPER_SOCKET" --owner "$owner" 2>/dev/null &
helper=$!
for _ in $(seq 1 200); do [ -S "$BANGER_HELPER_SOCKET" ] && break; sleep 0.01; done
echo image >"$tmp/img/etc/hostname"
mkfs.ext4 -q -F -d "$tmp/img" "$tmp/rootfs.ext4" 16M >/dev/null 2>&1
{
    printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\076\000\001\000\000\000'
    head -c 40 /dev/zero
} >"$tmp/vmlinux"
truncate -s 4096 "$tmp/vmlinux"
banger-image import default --rootfs "$tmp/rootfs.ext4" --kernel "$tmp/vmlinux" >/dev/null
mkdir -p "$BANGER_STATE_DIR/ssh"
ssh-keygen -q -t ed25519 -N '' -C banger -f "$BANGER_STATE_DIR/ssh/id_ed25519"
chown -R "$owner:$owner" "$BANGER_STATE_DIR"

as_owner() { setpriv --reuid="$owner" --regid="$owner" --clear-groups -- "$@"; }
now_ns() { date +%s%N; }

echo "banger-reconcile benchmark: TEST STAND-IN firecracker/jailer, $bin, $runs runs per size, as uid $owner"
have=0
declare -A mean
for want in $counts; do
    t0=$(now_ns)
    seq $((have + 1)) "$want" | xargs -P 2 -I{} sh -c \
        'setpriv --reuid='"$owner"' --regid='"$owner"' --clear-groups -- banger up '"$tag"'-{} --no-wait >/dev/null 2>>'"$tmp"'/up.err' \
        || { echo "reconcile.sh: banger up failed:" >&2; tail -5 "$tmp/up.err" >&2; exit 1; }
    t1=$(now_ns)
    have=$want
    findings=$(as_owner banger-reconcile --apply --gc | wc -l)
    times=()
    for _ in $(seq 1 "$runs"); do
        a=$(now_ns)
        as_owner banger-reconcile >/dev/null
        b=$(now_ns)
        times+=($(((b - a) / 1000)))
    done
    # Its two halves: the helper's reconcile.scan (ledger and host) and reading the records.
    a=$(now_ns)
    printf '{"op":"reconcile.scan","args":{}}\n' | as_owner socat -t 30 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET" >/dev/null
    b=$(now_ns)
    as_owner banger-vm list >/dev/null
    c=$(now_ns)
    scan_ms=$(((b - a) / 1000000))
    list_ms=$(((c - b) / 1000000))
    stats=$(printf '%s\n' "${times[@]}" | sort -n | awk -v n="$want" '{a[NR]=$1; s+=$1} END {printf "%.1f %.1f %.1f %.1f", s/NR/1000, a[int((NR+1)/2)]/1000, a[1]/1000, s/NR/n}')
    read -r m med lo per <<<"$stats"
    mean[$want]=$m
    printf '  %5d VMs: reconcile mean %7.1f ms  median %7.1f ms  min %7.1f ms  (%.1f us per VM; %d findings; helper scan %d ms, records %d ms; made in %d s)\n' \
        "$want" "$m" "$med" "$lo" "$per" "$findings" "$scan_ms" "$list_ms" $(((t1 - t0) / 1000000000))
done
set -- $counts
prev=""
for c in "$@"; do
    if [ -n "$prev" ]; then
        awk -v a="${mean[$prev]}" -v b="${mean[$c]}" -v p="$prev" -v c="$c" \
            'BEGIN {printf "  %d -> %d VMs: time x%.1f for records x%.0f\n", p, c, b/a, c/p}'
    fi
    prev=$c
done
