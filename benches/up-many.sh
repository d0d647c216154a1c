#!/usr/bin/env bash
# Benchmark: does `banger up` slow down as VMs pile up? COUNT VMs (default 50) brought up one
# after another with `banger up NAME --wait-console READY`, all kept running; prints the time
# of the first, of every tenth and of the last, the ratio of the last five to the first five
# (medians, so one slow run does not decide it), and the ratio of the trend over all of them
# (Theil-Sen, robust to the bursts of other tenants' work). With the Firecracker and jailer TEST
# STAND-INS by default; with the real ones and the rig's tiny guest (128 MiB each) when
# BANGER_TEST_FIRECRACKER and BANGER_TEST_JAILER are set. Prints numbers; asserts nothing.
# Needs root.
#
#   sudo benches/up-many.sh             # COUNT=50; BANGER_BIN=target/release by default
#   sudo BANGER_TEST_FIRECRACKER=... BANGER_TEST_JAILER=... benches/up-many.sh
#
# Runs in a network namespace and a private mount namespace of its own (state on a
# loop-mounted XFS), through a real helper on a temp socket; everything is taken down and
# removed on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# What bench_bin and bench_firecracker set (declared here so the script reads whole without
# following the source).
bin="" fc="" jailer="" standin=1 rig=""
# shellcheck source=benches/standin.bash
. "$here/benches/standin.bash"
bench_bin up-many.sh banger-vm banger-snap banger-net banger-jail banger-image banger-helper banger-console-keeper
bench_firecracker
bench_in_netns up-many.sh "$0" "$@"
count=${COUNT:-50}
tmp=$(mktemp -d /tmp/banger-many-bench.XXXXXX)
chmod 0755 "$tmp"
x=$tmp/xfs
export PATH="$bin:$PATH"
export BANGER_STATE_DIR=$x/state BANGER_RUN_DIR=$tmp/run BANGER_CONFIG_DIR=$tmp/etc
export BANGER_ROOT_DIR=$tmp/root BANGER_JAIL_DIR=$x/jail BANGER_HELPER_SOCKET=$tmp/helper.sock
# The owner and its group, as `banger system install` records them (no passwd lookup per step).
export BANGER_FIRECRACKER=$fc BANGER_JAILER=$jailer BANGER_OWNER_UID=4343 BANGER_OWNER_GID=4343
helper=""
cleanup() {
    local n
    for n in $(seq 1 "$count"); do
        banger-vm kill "m$n" 2>/dev/null | banger-jail teardown 2>/dev/null | banger-net down >/dev/null 2>&1 || true
        banger-snap rm "m$n" >/dev/null 2>&1 || true
    done
    [ -n "$helper" ] && kill "$helper" 2>/dev/null
    if mountpoint -q "$x" 2>/dev/null; then umount "$x" || umount -l "$x"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
truncate -s 4G "$tmp/xfs.img"
mkfs.xfs -q -m reflink=1 "$tmp/xfs.img"
mkdir -p "$x"
mount -o loop "$tmp/xfs.img" "$x"
chmod 0755 "$x"
mkdir -p "$BANGER_STATE_DIR" "$BANGER_RUN_DIR" "$tmp/img/etc"
banger-helper --socket "$BANGER_HELPER_SOCKET" --owner 4343 2>/dev/null &
helper=$!
for _ in $(seq 1 200); do [ -S "$BANGER_HELPER_SOCKET" ] && break; sleep 0.01; done
echo image >"$tmp/img/etc/hostname"
mkfs.ext4 -q -F -d "$tmp/img" "$tmp/rootfs.ext4" 16M >/dev/null 2>&1
if [ "$standin" -eq 1 ]; then
    ready=STANDIN_GUEST_READY
    kind="TEST STAND-IN firecracker/jailer"
    {
        printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\076\000\001\000\000\000'
        head -c 40 /dev/zero
    } >"$tmp/vmlinux"
    truncate -s 4096 "$tmp/vmlinux"
else
    ready=TINY_GUEST_READY
    kind="real Firecracker/jailer, tiny guest"
    as "$rig/tiny-guest.S" -o "$tmp/tiny.o"
    ld -static -nostdlib -Ttext=0x1000000 -e _start "$tmp/tiny.o" -o "$tmp/vmlinux"
fi
banger-image import default --rootfs "$tmp/rootfs.ext4" --kernel "$tmp/vmlinux" >/dev/null
chmod -R a+rX "$BANGER_STATE_DIR"
# The first VM makes the bridge and the NAT: a resident VM makes them before the count.
banger-vm new keep --image default | banger-net up >/dev/null

# now_us VAR: the time in microseconds into VAR, from bash's own clock (no process, not even
# a subshell: $(...) would fork one, 0.8 ms here, into every figure)
now_us() { printf -v "$1" '%s' "${EPOCHREALTIME/[.,]/}"; }
# TIMING=1: banger's per-step timing lines of the first and the last up, printed at the end.
timing=()
[ -z "${TIMING:-}" ] || timing=(--timing)
times=()
for n in $(seq 1 "$count"); do
    now_us t0
    banger up "m$n" --mem 128 --wait-console "$ready" "${timing[@]}" >/dev/null 2>"$tmp/up.err" \
        || { cat "$tmp/up.err" >&2; exit 1; }
    now_us t1
    times+=($((t1 - t0)))
    [ "$n" -eq 1 ] && cp "$tmp/up.err" "$tmp/up-first.err"
done
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
first=$(printf '%s\n' "${times[@]:0:5}" | median)
last=$(printf '%s\n' "${times[@]: -5}" | median)
echo "banger up --wait-console, one VM after another, all kept running, $kind, $bin"
for n in $(seq 1 "$count"); do
    if [ "$n" -eq 1 ] || [ $((n % 10)) -eq 0 ] || [ "$n" -eq "$count" ]; then
        awk -v n="$n" -v t="${times[$((n - 1))]}" 'BEGIN { printf "  VM %-4s %8.1f ms\n", n, t / 1000 }'
    fi
done
awk -v f="$first" -v l="$last" -v c="$count" 'BEGIN {
    printf "  median of VMs 1-5 %8.1f ms, of VMs %d-%d %8.1f ms: ratio %.2f\n", f / 1000, c - 4, c, l / 1000, l / f }'
# The trend over every up (Theil-Sen: the median of the slopes between every two ups, the
# intercept the median of what is left): a burst of another tenant's work in the first or the
# last five moves the medians above, and this hardly at all.
slope=$(for i in $(seq 0 $((count - 1))); do echo "$i ${times[$i]}"; done | awk '
    { x[NR] = $1; y[NR] = $2 }
    END { for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) print (y[j] - y[i]) / (x[j] - x[i]) }' |
    sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
base=$(for i in $(seq 0 $((count - 1))); do echo "$i ${times[$i]}"; done |
    awk -v s="$slope" '{ print $2 - s * $1 }' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
awk -v s="$slope" -v b="$base" -v c="$count" 'BEGIN {
    f = b; l = b + s * (c - 1)
    printf "  trend over all %d (Theil-Sen): VM 1 %8.1f ms, VM %d %8.1f ms: ratio %.2f (%+.3f ms per VM)\n", c, f / 1000, c, l / 1000, l / f, s / 1000 }'
if [ -n "${TIMING:-}" ]; then
    echo "where the time went in the first up:"
    sed 's/^/  /' "$tmp/up-first.err"
    echo "and in the last:"
    sed 's/^/  /' "$tmp/up.err"
fi
